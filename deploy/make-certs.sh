#!/bin/sh
# TLS certificates for a deployment: a private CA and one server certificate for the MQTT
# broker (8883/8884), the Kafka brokers (SASL_SSL), the console and the webhooks (HTTPS).
#
#   deploy/make-certs.sh DIR [DNS-NAME...]
#
# Writes DIR/ca.crt + DIR/ca.key (the CA, 10 years; kept when it exists, so devices that trust
# it keep working after a renewal) and DIR/server.crt + DIR/server.key (825 days) valid for
# every DNS-NAME (default: the names of deploy/compose.yaml and deploy/k8s, and localhost) and
# 127.0.0.1, plus DIR/server.pem (key and certificate in one file, Kafka's PEM keystore).
# Devices get ca.crt; keep ca.key offline. Needs only `openssl`.
set -eu
dir=${1:?usage: deploy/make-certs.sh DIR [DNS-NAME...]}
shift
[ $# -gt 0 ] || set -- mosquitto kafka-1 kafka-2 kafka-3 eldercare-console eldercare-webhooks \
    mosquitto.eldercare.svc eldercare-console.eldercare.svc localhost
mkdir -p "$dir"
umask 077
san=""
for name in "$@"; do san="${san}DNS:${name},"; done
san="${san}IP:127.0.0.1"
if [ ! -f "$dir/ca.key" ]; then
    openssl req -x509 -newkey rsa:3072 -nodes -days 3650 -subj "/CN=eldercare private CA" \
        -keyout "$dir/ca.key" -out "$dir/ca.crt" 2>/dev/null
fi
openssl req -newkey rsa:2048 -nodes -subj "/CN=$1" \
    -keyout "$dir/server.key" -out "$dir/server.csr" 2>/dev/null
printf 'subjectAltName=%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n' \
    "$san" > "$dir/server.ext"
openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -days 825 -extfile "$dir/server.ext" -out "$dir/server.crt" 2>/dev/null
rm -f "$dir/server.csr" "$dir/server.ext" "$dir/ca.srl"
cat "$dir/server.key" "$dir/server.crt" > "$dir/server.pem"
chmod 644 "$dir/ca.crt" "$dir/server.crt"
echo "$dir: ca.crt (give it to devices), server.crt + server.key for: $*"
