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

    /** Adds an option per value to a select, labelled from the catalog. */
    fillSelect: function (select, values, labelOf) {
      values.forEach(function (value) {
        $('<option>').attr('value', value).text(labelOf(value)).appendTo(select);
      });
    },

    /** ${NAME} or $(NAME): an environment variable Node-RED substitutes at deploy. */
    isEnvReference: function (value) {
      return typeof value === 'string' && /^\$\{[^}]+\}$|^\$\([^)]+\)$/.test(value.trim());
    },
  };
})();
