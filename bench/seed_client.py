"""One device provisioned the way ThingsBoard's documentation shows it: a paho-mqtt 1.x client
that connects as "provision", subscribes, publishes the request, saves the credentials to a file
and disconnects. One process per device. Prints its own CPU time and peak RSS as JSON at exit.

Usage: python3 seed_client.py HOST PORT KEY SECRET DEVICE_NAME CREDENTIALS_FILE
"""

import json
import resource
import sys

from paho.mqtt.client import Client


class ProvisionClient(Client):
    PROVISION_REQUEST_TOPIC = "/provision/request"
    PROVISION_RESPONSE_TOPIC = "/provision/response"

    def __init__(self, host, port, provision_request, credentials_file):
        super().__init__()
        self._host = host
        self._port = port
        self._username = "provision"
        self.on_connect = self.__on_connect
        self.on_message = self.__on_message
        self.__provision_request = provision_request
        self.__credentials_file = credentials_file
        self.status = None

    def __on_connect(self, client, userdata, flags, rc):
        if rc == 0:
            client.subscribe(self.PROVISION_RESPONSE_TOPIC)
            client.publish(self.PROVISION_REQUEST_TOPIC, json.dumps(self.__provision_request))
        else:
            self.status = "CONNACK %s" % rc
            self.disconnect()

    def __on_message(self, client, userdata, msg):
        decoded = json.loads(msg.payload.decode("UTF-8"))
        self.status = decoded.get("status")
        if self.status == "SUCCESS":
            with open(self.__credentials_file, "w") as credentials:
                credentials.write(decoded["credentialsValue"])
        self.disconnect()

    def provision(self):
        self.connect(self._host, self._port, 60)
        self.loop_forever()


if __name__ == "__main__":
    host, port, key, secret, device_name, credentials_file = sys.argv[1:7]
    client = ProvisionClient(
        host,
        int(port),
        {"provisionDeviceKey": key, "provisionDeviceSecret": secret, "deviceName": device_name},
        credentials_file,
    )
    client.provision()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "status": client.status,
                "cpuMicros": round((usage.ru_utime + usage.ru_stime) * 1e6),
                "peakRss": usage.ru_maxrss * 1024,
            }
        )
    )
    sys.exit(0 if client.status == "SUCCESS" else 1)
