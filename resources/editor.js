/*
 * Editor helpers shared by the node types of node-red-contrib-thingsboard-provision; each node's
 * editor file loads this from resources/node-red-contrib-thingsboard-provision/editor.js.
 */
(function () {
  'use strict';
  // Every node type's editor file loads this script: the first load defines the helpers.
  if (window.ThingsboardProvisionEditor) {
    return;
  }
  var MODULE = 'node-red-contrib-thingsboard-provision';

  window.ThingsboardProvisionEditor = {
    /** Translates in one node type's catalog: validators and labels run without a node's _(). */
    catalog: function (type) {
      var namespace = MODULE + '/' + type + ':';
      return function (key, options) {
        return RED._(namespace + key, options);
      };
    },

    /**
     * A flow node's labels from its catalog: palette, ports, and the node's own (its name, else its
     * fixed device name, else the default). Each is named in the registerType literal, which must
     * stay an object literal: the Flow Library reads the definition from the source.
     */
    nodeLabels: function (type) {
      var t = window.ThingsboardProvisionEditor.catalog(type);
      return {
        paletteLabel: function () {
          return t(type + '.paletteLabel');
        },
        inputLabels: function () {
          return t(type + '.ports.input');
        },
        outputLabels: function () {
          return t(type + '.ports.output');
        },
        label: function () {
          if (this.name) {
            return this.name;
          }
          if (this.deviceNameType === 'str' && this.deviceName) {
            return t(type + '.nodeLabel.device', { device: this.deviceName });
          }
          return t(type + '.nodeLabel.default');
        },
        labelStyle: function () {
          return this.name ? 'node_label_italic' : '';
        },
      };
    },

    /** The device name's typed input, with the sources the core nodes offer. */
    deviceNameInput: function () {
      $('#node-input-deviceName').typedInput({
        default: 'msg',
        typeField: $('#node-input-deviceNameType'),
        types: ['msg', 'flow', 'global', 'str', 'env', 'jsonata'],
      });
    },

    /** Adds an option per value to a select, labelled from the catalog. */
    fillSelect: function (select, values, labelOf) {
      values.forEach(function (value) {
        $('<option>').attr('value', value).text(labelOf(value)).appendTo(select);
      });
    },

    /** ${NAME} or $(NAME): an environment variable Node-RED substitutes at deploy. */
    isEnvReference: isEnvReference,

    /** A validator of a number of at least `min` (whole with `integer`), refusing with t(errorKey). */
    numberAtLeast: function (t, errorKey, min, integer) {
      return function (v) {
        if (isEnvReference(v)) {
          return true;
        }
        var text = String(v === undefined || v === null ? '' : v).trim();
        var n = Number(text);
        if (text !== '' && isFinite(n) && n >= min && (!integer || Math.floor(n) === n)) {
          return true;
        }
        return t(errorKey);
      };
    },

    /**
     * A validator of the deviceName typed input: an empty fixed name is refused already here, since
     * ThingsBoard would invent a name nobody learns.
     */
    deviceNameValidator: function (t, errorKey) {
      var validTyped = RED.validators.typedInput('deviceNameType');
      return function (v, opt) {
        var type = $('#node-input-deviceNameType').val() || this.deviceNameType;
        if (type === 'str' && String(v === undefined || v === null ? '' : v).trim() === '') {
          return t(errorKey);
        }
        return validTyped.call(this, v, opt);
      };
    },

    /** A validator of the gateway's name: required when the node sends or receives through one. */
    gatewayValidator: function (t, errorKey) {
      return function (v) {
        var via = $('#node-input-via').val() || this.via;
        if (via === 'gateway' && String(v === undefined || v === null ? '' : v).trim() === '') {
          return t(errorKey);
        }
        return true;
      };
    },

    /** Shows `row` when the chosen server uses TLS and the transport has none (CoAP). */
    warnCoapOverTls: function (config, transportName, row) {
      var transports = RED.settings.thingsboardProvisionConfigTransports;
      var server = RED.nodes.node(config.val());
      var usesTls = !!server && (server.usetls === true || server.usetls === 'true');
      var withoutTls = !!transports[transportName] && !transports[transportName].tls;
      row.toggleClass('hide', !(withoutTls && usesTls));
    },
  };

  function isEnvReference(value) {
    return typeof value === 'string' && /^\$\{[^}]+\}$|^\$\([^)]+\)$/.test(value.trim());
  }
})();
