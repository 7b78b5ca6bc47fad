/**
 * A deterministic, realistic syslog auth.log for the filter benchmark: interleaved SSH
 * connections (brute force against root and invalid users, keyboard-interactive/PAM, scanners,
 * accepted logins with their sessions), plus the noise that shares the file on a Debian host
 * (cron, sudo, systemd-logind, kernel firewall lines). Peer addresses come only from the
 * documentation ranges 192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24 and 2001:db8::/32.
 *
 * Process ids behave as on a busy host: they come from a bounded space (kernel.pid_max 32768,
 * wrapping to 300, as Linux allocates them, never one still in use), and the host's other
 * processes take pids between two logged ones (a steady rate plus bursts such as a build or a
 * backup), so a pid comes round again after minutes, sometimes inside the five minutes and 100
 * connections that fail2ban's multi-line cache remembers. Some connections end without a line
 * that closes them for the filter (a login timeout), leaving their state behind for the next
 * owner of the pid. Up to INTERLEAVED connections and jobs run at a time.
 *
 * The same seed gives the same file, byte for byte: the PRNG is seeded (mulberry32), the clock
 * is a fixed start plus generated gaps, and nothing reads the wall clock or Math.random.
 */
import { closeSync, openSync, writeSync } from 'node:fs';

/** Seeded PRNG (mulberry32): small, fast and good enough to shuffle a log mix. */
export class Prng {
  private state: number;

  /** @param seed any 32-bit integer */
  constructor(seed: number) {
    this.state = seed >>> 0;
  }

  /** @returns a float in [0, 1) */
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }

  /** @returns an integer in [min, max] */
  int(min: number, max: number): number {
    return min + Math.floor(this.next() * (max - min + 1));
  }

  /** @returns one element of a non-empty list */
  pick<T>(list: readonly T[]): T {
    return list[Math.floor(this.next() * list.length)]!;
  }

  /** @returns true with probability p */
  chance(p: number): boolean {
    return this.next() < p;
  }
}

/** How many lines of each kind went into the file (for the README's "line mix"). */
export type LineMix = Map<string, number>;

const HOST = 'web1';
/** Connections and jobs running at once (a busy host's sshd serves many clients together). */
const INTERLEAVED = 24;
/** Linux: pids go up to pid_max - 1, then wrap to 300 (the ones below are kept for daemons). */
const PID_MAX = 32768;
const PID_WRAP = 300;
/** systemd-logind's pid: a daemon that lives as long as the log. */
const LOGIND_PID = 512;
/** Processes the rest of the host starts per second of log time, on average (bursts aside). */
const FORKS_PER_SECOND = 200;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
const INVALID_USERS = ['admin', 'test', 'oracle', 'ubuntu', 'postgres', 'user', 'guest', 'pi', 'ftpuser', 'git', 'hadoop', 'support', 'mysql', 'nagios', 'jenkins', 'minecraft', 'dev', 'tomcat', 'www', 'ansible'];
const STAFF = ['alice', 'bob', 'carol', 'deploy'];
const KEX_OFFERS = ['diffie-hellman-group14-sha1,diffie-hellman-group-exchange-sha1,diffie-hellman-group1-sha1', 'diffie-hellman-group1-sha1'];
const B64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

interface Stream {
  /** "sshd[1234]", "CRON[77]", "sudo", "kernel" ... */
  readonly program: string;
  /** the pid this stream holds while it runs, freed when it ends (0: none of its own) */
  readonly pid: number;
  readonly kind: string;
  readonly messages: string[];
  next: number;
}

/**
 * Writes the log to a file.
 * @param path file to create (overwritten)
 * @param lines exact number of lines to write
 * @param seed PRNG seed; the same seed gives the same file
 * @returns the number of lines of each kind (`sshd:failed-password-root`, `cron`, ...)
 */
export function writeAuthLog(path: string, lines: number, seed: number): LineMix {
  const gen = new AuthLogGenerator(seed);
  const fd = openSync(path, 'w');
  try {
    let chunk = '';
    for (let i = 0; i < lines; i++) {
      chunk += `${gen.line()}\n`;
      if (chunk.length > 1 << 20) {
        writeSync(fd, chunk);
        chunk = '';
      }
    }
    writeSync(fd, chunk);
  } finally {
    closeSync(fd);
  }
  return gen.mix;
}

/** Produces the lines one by one; see writeAuthLog(). */
export class AuthLogGenerator {
  readonly mix: LineMix = new Map();
  private readonly rng: Prng;
  private readonly active: Stream[] = [];
  // 2026-10-01 00:00:00 as a wall-clock date; formatted with UTC getters so the zone never matters.
  private clock = Date.UTC(2026, 9, 1, 0, 0, 0);
  /** the last pid handed out (to a logged process or to the rest of the host) */
  private lastPid = 2000;
  private readonly pidsInUse = new Set<number>([LOGIND_PID]);
  private session = 100;
  private uptime = 86_400.123456;
  /** A few hundred attackers that come back, as on a real server, plus fresh ones. */
  private readonly attackers: string[] = [];

  /** @param seed PRNG seed */
  constructor(seed: number) {
    this.rng = new Prng(seed);
    for (let i = 0; i < 400; i++) this.attackers.push(this.freshAddress());
  }

  /** @returns the next log line (without newline) */
  line(): string {
    const rng = this.rng;
    // Connections and jobs interleave, as many clients hit sshd at once.
    while (this.active.length < INTERLEAVED) this.active.push(this.scenario());
    const i = rng.int(0, this.active.length - 1);
    const s = this.active[i]!;
    const msg = s.messages[s.next++]!;
    if (s.next >= s.messages.length) {
      this.active.splice(i, 1);
      if (s.pid !== 0 && s.pid !== LOGIND_PID) this.pidsInUse.delete(s.pid);
    }
    const gap = rng.chance(0.3) ? 0 : rng.int(0, 1200);
    this.clock += gap;
    this.otherForks(gap);
    this.uptime += 0.5 + rng.next();
    const tag = msg.startsWith('\u0001') ? msg.slice(1, msg.indexOf('\u0002')) : s.kind;
    const text = msg.startsWith('\u0001') ? msg.slice(msg.indexOf('\u0002') + 1) : msg;
    this.mix.set(tag, (this.mix.get(tag) ?? 0) + 1);
    const body = s.program === 'kernel' ? `kernel: [${this.uptime.toFixed(6).padStart(13)}] ${text}` : `${s.program}: ${text}`;
    return `${this.date()} ${HOST} ${body}`;
  }

  /**
   * Pids the rest of the host takes during `ms` of log time: a steady rate, and now and then a
   * burst (a build, a backup, a cron job forking thousands of processes).
   */
  private otherForks(ms: number): void {
    const rng = this.rng;
    let n = Math.floor((ms / 1000) * FORKS_PER_SECOND * 2 * rng.next());
    if (rng.chance(0.0015)) n += rng.int(1000, 12_000);
    // The cursor only moves: other processes' pids are not tracked, they end soon enough.
    this.lastPid = PID_WRAP + ((this.lastPid - PID_WRAP + n) % (PID_MAX - PID_WRAP));
  }

  /** @returns the next free pid, as Linux hands them out (the next one up, wrapping, skipping those in use) */
  private newPid(): number {
    let p = this.lastPid;
    do p = p + 1 >= PID_MAX ? PID_WRAP : p + 1;
    while (this.pidsInUse.has(p));
    this.lastPid = p;
    this.pidsInUse.add(p);
    return p;
  }

  private date(): string {
    const d = new Date(this.clock);
    const two = (n: number): string => String(n).padStart(2, '0');
    return `${MONTHS[d.getUTCMonth()]} ${String(d.getUTCDate()).padStart(2, ' ')} ${two(d.getUTCHours())}:${two(d.getUTCMinutes())}:${two(d.getUTCSeconds())}`;
  }

  private freshAddress(): string {
    const rng = this.rng;
    if (rng.chance(0.15)) {
      const h = (): string => rng.int(0, 0xffff).toString(16);
      return rng.chance(0.5) ? `2001:db8:${h()}:${h()}::${h()}` : `2001:db8:${h()}:${h()}:${h()}:${h()}:${h()}:${h()}`;
    }
    return `${rng.pick(['192.0.2', '198.51.100', '203.0.113'])}.${rng.int(1, 254)}`;
  }

  private attacker(): string {
    const rng = this.rng;
    if (rng.chance(0.1)) return this.freshAddress();
    const a = rng.pick(this.attackers);
    // A few peers show up as IPv4-mapped IPv6 (sshd listening on a dual-stack socket).
    return rng.chance(0.02) && !a.includes(':') ? `::ffff:${a}` : a;
  }

  private scenario(): Stream {
    const rng = this.rng;
    const r = rng.next();
    // Roughly 55% of the lines come from sshd, the rest is the noise every auth.log carries.
    if (r < 0.2) return this.bruteInvalid();
    if (r < 0.3) return this.bruteRoot();
    if (r < 0.34) return this.keyboardInteractive();
    if (r < 0.44) return this.scanner();
    if (r < 0.49) return this.accepted();
    if (r < 0.51) return this.notAllowed();
    if (r < 0.7) return this.cron();
    if (r < 0.76) return this.sudo();
    if (r < 0.9) return this.kernel();
    return this.logind();
  }

  private sshd(kind: string, messages: string[]): Stream {
    const pid = this.newPid();
    return { program: `sshd[${pid}]`, pid, kind, messages, next: 0 };
  }

  /**
   * How a brute-force connection ends: sshd's usual close lines, or (sometimes) a login timeout
   * that no filter rule reads, so the connection's state stays behind.
   */
  private ending(ip: string, p: number, close: () => string[]): string[] {
    if (this.rng.chance(0.08)) return [this.t('sshd:timeout', `fatal: Timeout before authentication for ${ip} port ${p}`)];
    return close();
  }

  private port(): number {
    return this.rng.int(1024, 65535);
  }

  /** "\u0001tag\u0002text": lets one stream count its lines under several kinds. */
  private t(tag: string, text: string): string {
    return `\u0001${tag}\u0002${text}`;
  }

  private bruteInvalid(): Stream {
    const rng = this.rng;
    const ip = this.attacker();
    const p = this.port();
    const u = rng.chance(0.03) ? '' : rng.pick(INVALID_USERS);
    const m = [this.t('sshd:invalid-user', `Invalid user ${u} from ${ip} port ${p}`)];
    const tries = rng.int(1, 3);
    for (let k = 0; k < tries; k++) {
      if (k === 0) m.push(this.t('sshd:pam-helper', 'pam_unix(sshd:auth): check pass; user unknown'));
      if (k === 0) m.push(this.t('sshd:pam-helper', `pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=${ip} `));
      m.push(this.t('sshd:failed-password-invalid', `Failed password for invalid user ${u} from ${ip} port ${p} ssh2`));
    }
    m.push(
      ...this.ending(ip, p, () =>
        rng.chance(0.6)
          ? [this.t('sshd:disconnect', `Received disconnect from ${ip} port ${p}:11: Bye Bye [preauth]`), this.t('sshd:disconnect', `Disconnected from invalid user ${u} ${ip} port ${p} [preauth]`)]
          : [this.t('sshd:closed-preauth', `Connection closed by invalid user ${u} ${ip} port ${p} [preauth]`)],
      ),
    );
    return this.sshd('sshd', m);
  }

  private bruteRoot(): Stream {
    const rng = this.rng;
    const ip = this.attacker();
    const p = this.port();
    const m = [this.t('sshd:pam-helper', `pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=${ip}  user=root`)];
    const tries = rng.chance(0.15) ? 6 : rng.int(1, 3);
    for (let k = 0; k < tries; k++) m.push(this.t('sshd:failed-password-root', `Failed password for root from ${ip} port ${p} ssh2`));
    if (tries === 6) {
      m.push(this.t('sshd:max-attempts', `error: maximum authentication attempts exceeded for root from ${ip} port ${p} ssh2 [preauth]`));
      m.push(this.t('sshd:too-many', `Disconnecting authenticating user root ${ip} port ${p}: Too many authentication failures [preauth]`));
      m.push(this.t('sshd:pam-helper', `PAM 5 more authentication failures; logname= uid=0 euid=0 tty=ssh ruser= rhost=${ip}  user=root`));
    } else {
      m.push(
        ...this.ending(ip, p, () =>
          rng.chance(0.5)
            ? [this.t('sshd:closed-preauth', `Connection closed by authenticating user root ${ip} port ${p} [preauth]`)]
            : [this.t('sshd:disconnect', `Received disconnect from ${ip} port ${p}:11: Bye Bye [preauth]`), this.t('sshd:disconnect', `Disconnected from authenticating user root ${ip} port ${p} [preauth]`)],
        ),
      );
    }
    return this.sshd('sshd', m);
  }

  private keyboardInteractive(): Stream {
    const rng = this.rng;
    const ip = this.attacker();
    const p = this.port();
    const u = rng.pick(INVALID_USERS);
    const m = [
      this.t('sshd:invalid-user', `Invalid user ${u} from ${ip} port ${p}`),
      this.t('sshd:pam-helper', `pam_unix(sshd:auth): authentication failure; logname= uid=0 euid=0 tty=ssh ruser= rhost=${ip} `),
      this.t('sshd:pam-error', `error: PAM: Authentication failure for illegal user ${u} from ${ip}`),
      this.t('sshd:failed-kbd-interactive', `Failed keyboard-interactive/pam for invalid user ${u} from ${ip} port ${p} ssh2`),
    ];
    if (rng.chance(0.3)) m.push(this.t('sshd:failed-none', `Failed none for invalid user ${u} from ${ip} port ${p} ssh2`));
    m.push(this.t('sshd:closed-preauth', `Connection closed by invalid user ${u} ${ip} port ${p} [preauth]`));
    return this.sshd('sshd', m);
  }

  private scanner(): Stream {
    const rng = this.rng;
    const ip = this.attacker();
    const p = this.port();
    const r = rng.next();
    let m: string[];
    if (r < 0.35) m = [this.t('sshd:closed-scanner', `Connection closed by ${ip} port ${p} [preauth]`)];
    else if (r < 0.5) m = [this.t('sshd:closed-scanner', `Connection reset by ${ip} port ${p} [preauth]`)];
    else if (r < 0.65) m = [this.t('sshd:no-ident', `Did not receive identification string from ${ip} port ${p}`)];
    else if (r < 0.8) {
      m = [
        this.t('sshd:kex-ident', 'error: kex_exchange_identification: Connection closed by remote host'),
        this.t('sshd:closed-scanner', `Connection closed by ${ip} port ${p}`),
      ];
    } else if (r < 0.9) m = [this.t('sshd:banner', `banner exchange: Connection from ${ip} port ${p}: invalid format`)];
    else m = [this.t('sshd:unable-negotiate', `Unable to negotiate with ${ip} port ${p}: no matching key exchange method found. Their offer: ${rng.pick(KEX_OFFERS)} [preauth]`)];
    return this.sshd('sshd', m);
  }

  private accepted(): Stream {
    const rng = this.rng;
    const u = rng.pick(STAFF);
    // Staff come from a few fixed addresses.
    const ip = rng.pick(['198.51.100.200', '198.51.100.201', '2001:db8:cafe::10']);
    const p = this.port();
    const sid = this.session++;
    const m: string[] = [];
    let method = 'publickey';
    if (rng.chance(0.2)) {
      m.push(this.t('sshd:failed-publickey', `Failed publickey for ${u} from ${ip} port ${p} ssh2: RSA SHA256:${this.b64(43)}`));
    }
    if (u !== 'deploy' && rng.chance(0.15)) {
      // A mistyped password before the right one.
      method = 'password';
      m.push(this.t('sshd:failed-password-valid', `Failed password for ${u} from ${ip} port ${p} ssh2`));
    }
    m.push(
      this.t('sshd:accepted', method === 'publickey' ? `Accepted publickey for ${u} from ${ip} port ${p} ssh2: ED25519 SHA256:${this.b64(43)}` : `Accepted password for ${u} from ${ip} port ${p} ssh2`),
      this.t('sshd:session', `pam_unix(sshd:session): session opened for user ${u}(uid=${1000 + STAFF.indexOf(u)}) by (uid=0)`),
      this.t('sshd:disconnect', `Received disconnect from ${ip} port ${p}:11: disconnected by user`),
      this.t('sshd:disconnect', `Disconnected from user ${u} ${ip} port ${p}`),
      this.t('sshd:session', `pam_unix(sshd:session): session closed for user ${u}`),
    );
    // systemd-logind reports the session under its own program name.
    this.active.push({
      program: `systemd-logind[${LOGIND_PID}]`,
      pid: LOGIND_PID,
      kind: 'systemd-logind',
      messages: [`New session ${sid} of user ${u}.`, `Session ${sid} logged out. Waiting for processes to exit.`, `Removed session ${sid}.`],
      next: 0,
    });
    return this.sshd('sshd', m);
  }

  private notAllowed(): Stream {
    const rng = this.rng;
    const ip = this.attacker();
    const p = this.port();
    const u = rng.pick(['root', 'admin', 'backup']);
    return this.sshd('sshd', [
      this.t('sshd:not-allowed', `User ${u} from ${ip} not allowed because not listed in AllowUsers`),
      this.t('sshd:failed-password-invalid', `Failed password for invalid user ${u} from ${ip} port ${p} ssh2`),
      this.t('sshd:closed-preauth', `Connection closed by invalid user ${u} ${ip} port ${p} [preauth]`),
    ]);
  }

  private cron(): Stream {
    const u = this.rng.chance(0.8) ? 'root' : 'www-data';
    const uid = u === 'root' ? 0 : 33;
    const pid = this.newPid();
    return {
      program: `CRON[${pid}]`,
      pid,
      kind: 'cron',
      messages: [`pam_unix(cron:session): session opened for user ${u}(uid=${uid}) by (uid=0)`, `pam_unix(cron:session): session closed for user ${u}`],
      next: 0,
    };
  }

  private sudo(): Stream {
    const rng = this.rng;
    const u = rng.pick(STAFF.slice(0, 3));
    const cmd = rng.pick(['/usr/bin/systemctl restart nginx', '/usr/bin/apt-get update', '/usr/bin/journalctl -u sshd', '/usr/bin/tail -n 100 /var/log/auth.log']);
    return {
      program: 'sudo',
      pid: 0,
      kind: 'sudo',
      messages: [
        `   ${u} : TTY=pts/${rng.int(0, 3)} ; PWD=/home/${u} ; USER=root ; COMMAND=${cmd}`,
        `pam_unix(sudo:session): session opened for user root(uid=0) by ${u}(uid=${1000 + STAFF.indexOf(u)})`,
        'pam_unix(sudo:session): session closed for user root',
      ],
      next: 0,
    };
  }

  private kernel(): Stream {
    const rng = this.rng;
    const src = this.attacker();
    const v6 = src.includes(':') && !src.startsWith('::ffff:');
    const dpt = rng.pick([23, 445, 3389, 8080, 5900, 25, 1433]);
    const text = v6
      ? `[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:86:dd SRC=${src} DST=2001:db8::1 LEN=60 TC=0 HOPLIMIT=52 FLOWLBL=0 PROTO=TCP SPT=${this.port()} DPT=${dpt} WINDOW=1024 RES=0x00 SYN URGP=0 `
      : `[UFW BLOCK] IN=eth0 OUT= MAC=52:54:00:12:34:56:52:54:00:65:43:21:08:00 SRC=${src.replace('::ffff:', '')} DST=192.0.2.1 LEN=44 TOS=0x00 PREC=0x00 TTL=${rng.int(40, 250)} ID=${rng.int(1, 65535)} PROTO=TCP SPT=${this.port()} DPT=${dpt} WINDOW=1024 RES=0x00 SYN URGP=0 `;
    return { program: 'kernel', pid: 0, kind: 'kernel', messages: [text], next: 0 };
  }

  private logind(): Stream {
    const sid = this.session++;
    return {
      program: `systemd-logind[${LOGIND_PID}]`,
      pid: LOGIND_PID,
      kind: 'systemd-logind',
      messages: [`New session c${sid} of user gdm.`, `Session c${sid} logged out. Waiting for processes to exit.`, `Removed session c${sid}.`],
      next: 0,
    };
  }

  private b64(n: number): string {
    let s = '';
    for (let i = 0; i < n; i++) s += B64[this.rng.int(0, 63)];
    return s;
  }
}
