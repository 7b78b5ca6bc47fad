import { createServer, type Server, type Socket } from 'node:net';

/** A message as a real SMTP client delivered it. */
export interface ReceivedMail {
  readonly from: string;
  readonly rcpt: string[];
  /** The DATA section, dot-unstuffed, CRLF line ends. */
  readonly data: string;
}

/** A small SMTP server on loopback (RFC 5321 subset: EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT). */
export interface TestSmtpServer {
  readonly port: number;
  readonly mails: ReceivedMail[];
  /** Answer DATA with this temporary failure while set (e.g. `451 4.3.0 try later`). */
  failWith: string | undefined;
  /** Resolve with the n-th mail (1-based) once it arrived. */
  waitForMail(n: number, timeoutMs?: number): Promise<ReceivedMail>;
  stop(): Promise<void>;
}

/** Start the server on a free loopback port. */
export async function startSmtpServer(): Promise<TestSmtpServer> {
  const mails: ReceivedMail[] = [];
  const sockets = new Set<Socket>();
  const waiters: Array<() => void> = [];
  const state: { failWith: string | undefined } = { failWith: undefined };
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    let buf = '';
    let inData = false;
    let from = '';
    let rcpt: string[] = [];
    let data: string[] = [];
    const reply = (s: string) => sock.write(`${s}\r\n`);
    reply('220 fleetban-test ESMTP');
    sock.setEncoding('latin1');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      let i: number;
      while ((i = buf.indexOf('\r\n')) !== -1) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        if (inData) {
          if (line === '.') {
            inData = false;
            if (state.failWith) reply(state.failWith);
            else {
              mails.push({ from, rcpt, data: Buffer.from(data.join('\r\n'), 'latin1').toString('utf8') });
              reply('250 2.0.0 queued');
              for (const w of waiters.splice(0)) w();
            }
            from = '';
            rcpt = [];
            data = [];
          } else {
            data.push(line.startsWith('.') ? line.slice(1) : line);
          }
          continue;
        }
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') reply('250-fleetban-test\r\n250 8BITMIME');
        else if (verb === 'HELO') reply('250 fleetban-test');
        else if (verb === 'MAIL') { from = /<([^>]*)>/.exec(line)?.[1] ?? ''; reply('250 2.1.0 ok'); }
        else if (verb === 'RCPT') { rcpt.push(/<([^>]*)>/.exec(line)?.[1] ?? ''); reply('250 2.1.5 ok'); }
        else if (verb === 'DATA') { inData = true; reply('354 go ahead'); }
        else if (verb === 'RSET') { from = ''; rcpt = []; data = []; reply('250 ok'); }
        else if (verb === 'NOOP') reply('250 ok');
        else if (verb === 'QUIT') { reply('221 bye'); sock.end(); }
        else reply('502 5.5.2 not implemented');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    mails,
    get failWith() { return state.failWith; },
    set failWith(v) { state.failWith = v; },
    waitForMail(n, timeoutMs = 15_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`timed out waiting for mail #${n} (have ${mails.length})`)), timeoutMs);
        const check = () => {
          if (mails.length >= n) { clearTimeout(timer); resolve(mails[n - 1]!); } else waiters.push(check);
        };
        check();
      });
    },
    async stop() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

/** Split a received message into its headers (name lower-cased, each occurrence) and its body. */
export function parseMail(data: string): { headers: Array<[string, string]>; body: string } {
  const end = data.indexOf('\r\n\r\n');
  const head = data.slice(0, end);
  const headers: Array<[string, string]> = [];
  for (const line of head.split('\r\n')) {
    if (/^[ \t]/.test(line) && headers.length > 0) headers[headers.length - 1]![1] += ` ${line.trim()}`;
    else {
      const c = line.indexOf(':');
      headers.push([line.slice(0, c).toLowerCase(), line.slice(c + 1).trim()]);
    }
  }
  return { headers, body: data.slice(end + 4) };
}

/** Decode a quoted-printable body (RFC 2045) to text. */
export function decodeQuotedPrintable(body: string): string {
  const bytes = body.replace(/=\r\n/g, '').replace(/\r\n/g, '\n');
  const out: number[] = [];
  for (let i = 0; i < bytes.length; i++) {
    if (bytes[i] === '=' && /^[0-9A-F]{2}$/.test(bytes.slice(i + 1, i + 3))) {
      out.push(parseInt(bytes.slice(i + 1, i + 3), 16));
      i += 2;
    } else out.push(...Buffer.from(bytes[i]!, 'utf8'));
  }
  return Buffer.from(out).toString('utf8');
}
