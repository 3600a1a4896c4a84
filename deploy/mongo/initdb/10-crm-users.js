// One MongoDB user per service, readWrite on its own database only: each service reads and writes
// only its own database (CONVENTIONS.md). The password of crm-<service> is CRM_<SERVICE>_MONGO_PASSWORD.
//
// The mongo image runs this once, on an empty data directory. It is idempotent: after changing a
// password, run it again as root (deploy/SECURITY.md):
//   docker compose exec mongo sh -c 'mongosh -u "$MONGO_INITDB_ROOT_USERNAME" -p "$MONGO_INITDB_ROOT_PASSWORD" \
//     --authenticationDatabase admin /docker-entrypoint-initdb.d/10-crm-users.js'
const SERVICES = ["customer", "sales", "support", "scoring", "marketing"];

const admin = db.getSiblingDB("admin");
for (const service of SERVICES) {
  const user = `crm-${service}`;
  const variable = `CRM_${service.toUpperCase()}_MONGO_PASSWORD`;
  const pwd = process.env[variable];
  if (!pwd) {
    throw new Error(`${variable} is not set (the password of ${user})`);
  }
  const roles = [{ role: "readWrite", db: `crm_${service}` }];
  if (admin.getUser(user) === null) {
    admin.createUser({ user, pwd, roles });
  } else {
    admin.updateUser(user, { pwd, roles });
  }
  print(`${user}: readWrite on crm_${service}`);
}
