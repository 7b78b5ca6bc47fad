/** A problem in a configuration file, located by file, line and key so an operator can fix it. */
export class ConfigError extends Error {
  /**
   * @param message what is wrong
   * @param file the file the problem is in, when known
   * @param line 1-based line number, when known
   * @param key the option name, when the problem is with one option
   */
  constructor(
    message: string,
    readonly file?: string,
    readonly line?: number,
    readonly key?: string,
  ) {
    super(ConfigError.format(message, file, line, key));
    this.name = 'ConfigError';
  }

  private static format(message: string, file?: string, line?: number, key?: string): string {
    const where = [file ? (line ? `${file}:${line}` : file) : undefined, key ? `key '${key}'` : undefined]
      .filter(Boolean)
      .join(', ');
    return where ? `${where}: ${message}` : message;
  }
}

/** Input from an operator (CLI argument) or a peer (stream entry) that cannot be accepted. */
export class InvalidInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidInputError';
  }
}

/** A firewall command failed; carries the operation and the tool's stderr. */
export class FirewallError extends Error {
  constructor(
    readonly operation: string,
    readonly stderr: string,
    options?: { cause?: unknown },
  ) {
    super(`${operation} failed: ${stderr.trim() || 'no error output'}`, options);
    this.name = 'FirewallError';
  }
}
