import type { Command } from 'commander';
import { aclFileLine, aclPasswordHash, clusterAclUsers, userPassword } from '../../common/acl.js';
import { configDir, loadFleetbanConfig } from '../../common/config/fleetban-config.js';
import { CLUSTER_NAME_RE, clusterKeys } from '../../common/protocol/keys.js';
import { HOSTS_CHANGED } from '../../common/protocol/messages.js';
import { CliError, withContext, type GlobalOptions } from '../context.js';

/** Where `fleetban acl` keeps the users' passwords unless --password-dir says otherwise. */
export const DEFAULT_PASSWORD_DIR = '/etc/fleetban/secrets';

export function registerAclCommand(program: Command, globals: () => GlobalOptions): void {
  program
    .command('acl')
    .description("print (or apply) the cluster's Redis ACL users: one per host, coordinator, admin, reader")
    .requiredOption('--hosts <list>', 'comma-separated host names of the agents')
    .option('--cluster <name>', 'cluster name (default: the configuration\'s)')
    .option('--password-dir <dir>', 'where each user\'s password is read from, or created (<user>.password, mode 0600)', DEFAULT_PASSWORD_DIR)
    .option('--apply', 'send the users to the configured Redis with ACL SETUSER and register the hosts (needs a login allowed to run ACL)')
    .action(async (o: { hosts: string; cluster?: string; passwordDir: string; apply?: boolean }) => {
      const g = globals();
      const cluster = o.cluster ?? loadFleetbanConfig(configDir(g.config)).cluster;
      if (!CLUSTER_NAME_RE.test(cluster)) throw new CliError(`invalid cluster name '${cluster}': letters, digits, '_', '.', '-' only`);
      const hosts = [...new Set(o.hosts.split(',').map((h) => h.trim()).filter(Boolean))];
      if (hosts.length === 0) throw new CliError('--hosts names no host');
      const users = clusterAclUsers(cluster, hosts).map((u) => ({ user: u, ...userPassword(o.passwordDir, u.name) }));
      const created = users.filter((u) => u.created);
      if (created.length > 0) process.stderr.write(`created ${created.length} password file${created.length === 1 ? '' : 's'} in ${o.passwordDir}\n`);
      if (!o.apply) {
        if (g.json) console.log(JSON.stringify(users.map((u) => ({ user: u.user.name, passwordFile: u.file, line: aclFileLine(u.user, u.password) }))));
        else for (const u of users) console.log(aclFileLine(u.user, u.password));
        return;
      }
      await withContext(g, async (ctx) => {
        for (const u of users) {
          try {
            await ctx.redis.call('ACL', 'SETUSER', u.user.name, 'reset', 'on', `#${aclPasswordHash(u.password)}`, ...u.user.rules);
          } catch (err) {
            throw new CliError(`ACL SETUSER ${u.user.name} refused: ${(err as Error).message} (log in as a Redis user allowed to run ACL, e.g. [cli] redis_username = default)`);
          }
        }
        await ctx.redis.sadd(clusterKeys(cluster).registry, ...hosts);
        await ctx.redis.publish(clusterKeys(cluster).control, HOSTS_CHANGED);
        // Persist when the server keeps its users in an aclfile; without one they live until a restart.
        const saved = await ctx.redis.call('ACL', 'SAVE').then(() => true, () => false);
        const what = `applied ${users.length} ACL users for cluster ${cluster} (${hosts.length} host${hosts.length === 1 ? '' : 's'} registered)`;
        if (g.json) console.log(JSON.stringify({ cluster, users: users.map((u) => u.user.name), hosts, saved }));
        else console.log(`${what}${saved ? '; saved to the aclfile' : '; the server has no aclfile: put them in one to keep them across restarts'}`);
      });
    });
}
