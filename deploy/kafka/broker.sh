#!/usr/bin/env bash
# Starts the apache/kafka image's own entrypoint (/etc/kafka/docker/run) after the two things it
# cannot do from KAFKA_* variables:
# - format the KRaft storage with the admin's SCRAM credential. The broker authenticates its own
#   inter-broker connection as admin over SCRAM, so the credential must exist before it starts;
#   with KRaft only `kafka-storage.sh format --add-scram` puts it there. The service users are
#   added later, over the network, by the kafka-acls job (deploy/kafka/acls.sh).
# - give the broker its JAAS login (the admin's password), kept out of the KAFKA_* variables so that
#   it is not copied into server.properties.
# The image's entrypoint then writes server.properties from KAFKA_*, finds the storage formatted
# (it tolerates "already formatted") and starts the broker.
set -euo pipefail

: "${CRM_KAFKA_ADMIN_PASSWORD:?CRM_KAFKA_ADMIN_PASSWORD must be set}"
: "${CLUSTER_ID:?CLUSTER_ID must be set}"

secrets=/tmp/crm-kafka
umask 077
mkdir -p "$secrets"

cat > "$secrets/server-jaas.conf" <<JAAS
KafkaServer {
  org.apache.kafka.common.security.scram.ScramLoginModule required
  username="admin"
  password="${CRM_KAFKA_ADMIN_PASSWORD}";
};
JAAS

# For the health check and for operators: kafka-topics.sh --command-config /tmp/crm-kafka/admin.properties
cat > "$secrets/admin.properties" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${CRM_KAFKA_ADMIN_PASSWORD}";
PROPERTIES

# The storage tool validates the node's configuration: the same values the broker will run with.
cat > "$secrets/format.properties" <<PROPERTIES
process.roles=${KAFKA_PROCESS_ROLES}
node.id=${KAFKA_NODE_ID}
controller.quorum.voters=${KAFKA_CONTROLLER_QUORUM_VOTERS}
controller.listener.names=${KAFKA_CONTROLLER_LISTENER_NAMES}
listeners=${KAFKA_LISTENERS}
advertised.listeners=${KAFKA_ADVERTISED_LISTENERS}
listener.security.protocol.map=${KAFKA_LISTENER_SECURITY_PROTOCOL_MAP}
inter.broker.listener.name=${KAFKA_INTER_BROKER_LISTENER_NAME}
sasl.enabled.mechanisms=${KAFKA_SASL_ENABLED_MECHANISMS}
sasl.mechanism.inter.broker.protocol=${KAFKA_SASL_MECHANISM_INTER_BROKER_PROTOCOL}
log.dirs=${KAFKA_LOG_DIRS}
PROPERTIES

# On a volume formatted before this changes nothing: the admin keeps the password it was formatted
# with (change it with kafka-configs.sh, see deploy/SECURITY.md).
/opt/kafka/bin/kafka-storage.sh format --ignore-formatted \
  --cluster-id "${CLUSTER_ID}" \
  --config "$secrets/format.properties" \
  --add-scram "SCRAM-SHA-512=[name=admin,password=${CRM_KAFKA_ADMIN_PASSWORD}]"

export KAFKA_OPTS="${KAFKA_OPTS:+$KAFKA_OPTS }-Djava.security.auth.login.config=$secrets/server-jaas.conf"
exec /etc/kafka/docker/run
