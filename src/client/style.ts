/**
 * Colour for terminals only: chalk when the stream is a TTY and NO_COLOR is not set (https://no-color.org),
 * plain text otherwise (pipes, files, CI logs, tests).
 */
import type chalkModule from 'chalk';

export interface Style {
  bold: (s: string) => string;
  dim: (s: string) => string;
  ok: (s: string) => string;
  bad: (s: string) => string;
  warn: (s: string) => string;
  info: (s: string) => string;
}

const plain: Style = { bold: (s) => s, dim: (s) => s, ok: (s) => s, bad: (s) => s, warn: (s) => s, info: (s) => s };

export function styleFor(stream: NodeJS.WriteStream, env: NodeJS.ProcessEnv = process.env): Style {
  const noColor = env.NO_COLOR !== undefined && env.NO_COLOR !== '';
  if (!stream.isTTY || noColor) return plain;
  // Loaded only for a terminal: chalk's colour detection is a good part of a quick command's start-up.
  const chalk = require('chalk') as typeof chalkModule;
  const c = new chalk.Instance({ level: chalk.level > 0 ? chalk.level : 1 });
  return { bold: c.bold, dim: c.dim, ok: c.green, bad: c.red, warn: c.yellow, info: c.cyan };
}

export const PLAIN: Style = plain;
