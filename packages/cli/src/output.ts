/** Where a command prints its human-readable lines (tests capture them). */
export interface Output {
  /** One line on stdout (a newline is added). */
  out(line: string): void;
  /** One line on stderr (a newline is added). */
  err(line: string): void;
}

export const processOutput: Output = {
  out: (line) => void process.stdout.write(`${line}\n`),
  err: (line) => void process.stderr.write(`${line}\n`),
};
