#!/usr/bin/env bash
# One-shot job, as admin: gives every principal of acls.txt its SCRAM-SHA-512 credential (created, or
# its password replaced) and its allow rules. Both are idempotent, so the job runs on every `up` and
# a changed password takes effect without wiping the broker's volume.
# It only adds: a rule dropped from acls.txt stays until it is removed with kafka-acls.sh --remove.
# A principal's password comes from CRM_<NAME>_KAFKA_PASSWORD (crm-sales: CRM_SALES_KAFKA_PASSWORD).
set -euo pipefail

bootstrap="${CRM_KAFKA_BOOTSTRAP:?CRM_KAFKA_BOOTSTRAP must be set}"
: "${CRM_KAFKA_ADMIN_PASSWORD:?CRM_KAFKA_ADMIN_PASSWORD must be set}"
table="${CRM_KAFKA_ACL_TABLE:-/crm/acls.txt}"
bin=/opt/kafka/bin

umask 077
config="$(mktemp)"
trap 'rm -f "$config"' EXIT
cat > "$config" <<PROPERTIES
security.protocol=SASL_PLAINTEXT
sasl.mechanism=SCRAM-SHA-512
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="${CRM_KAFKA_ADMIN_PASSWORD}";
PROPERTIES

password_of() {
  local variable
  variable="CRM_$(printf '%s' "${1#crm-}" | tr 'a-z-' 'A-Z_')_KAFKA_PASSWORD"
  if [ -z "${!variable:-}" ]; then
    echo "kafka-acls: $variable is not set (the password of $1)" >&2
    return 1
  fi
  printf '%s' "${!variable}"
}

declare -A credentialed=()
# The table on fd 3: the JVM tools inside the loop must not read it from stdin.
while read -r principal resource operations names <&3; do
  case "$principal" in '' | '#'*) continue ;; esac
  if [ -z "${credentialed[$principal]:-}" ]; then
    password="$(password_of "$principal")"
    "$bin/kafka-configs.sh" --bootstrap-server "$bootstrap" --command-config "$config" --alter \
      --entity-type users --entity-name "$principal" \
      --add-config "SCRAM-SHA-512=[iterations=8192,password=${password}]"
    credentialed[$principal]=1
  fi
  args=(--add --allow-principal "User:$principal" --resource-pattern-type literal)
  for operation in ${operations//,/ }; do
    args+=(--operation "$operation")
  done
  for name in $names; do
    args+=("--$resource" "$name")
  done
  "$bin/kafka-acls.sh" --bootstrap-server "$bootstrap" --command-config "$config" "${args[@]}"
done 3< "$table"
echo "kafka-acls: users and ACLs of $table applied"
