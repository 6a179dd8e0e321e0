/**
 * The release's ledger: every message it handled, in the order it handled them, with who sent it (verified or
 * declared) and what became of it. Signals and accepted updates reach the workflow in history order, so entry
 * `seq` n is the n-th `WorkflowExecutionSignaled` / `WorkflowExecutionUpdateAccepted` event of the history:
 * `gantry history` matches the two exactly, by order, never by clocks. Temporal's cancellation requests get
 * their own order (`cancel-request` n is the n-th `WorkflowExecutionCancelRequested` event).
 *
 * Bounded whatever arrives: accepted entries are few by nature (votes, decisions, one cancel) and all kept;
 * refused ones keep the last LEDGER_REFUSED_KEPT, the rest are counted. Deterministic (workflow code).
 */
import type { LedgerEntry, LedgerStatus } from '../shared/release';
import { displayText, MAX_NAME } from '../shared/text';

export const LEDGER_REFUSED_KEPT = 50;

export class Ledger {
  constructor(private readonly state: LedgerStatus) {}

  /** A signal or an accepted update, handled now. */
  message(e: Omit<LedgerEntry, 'seq' | 'at'>): LedgerEntry {
    this.state.messages += 1;
    return this.push({ ...e, seq: this.state.messages });
  }

  /** Temporal's own cancellation request (no payload, no identity). */
  cancelRequest(verdict: LedgerEntry['verdict'], why?: string): LedgerEntry {
    this.state.cancelRequests += 1;
    return this.push({ kind: 'cancel-request', name: 'cancel', seq: this.state.cancelRequests, verdict, ...(why ? { why } : {}) });
  }

  /** Something the release itself did on behalf of nobody: the start it verified, a timeout, the outcome. */
  event(e: Omit<LedgerEntry, 'seq' | 'at'>): LedgerEntry {
    return this.push({ ...e, seq: 0 });
  }

  private push(e: Omit<LedgerEntry, 'at'>): LedgerEntry {
    const entry: LedgerEntry = {
      ...e,
      name: displayText(e.name, 40),
      ...(e.actor ? { actor: displayText(e.actor, MAX_NAME) } : {}),
      ...(e.why ? { why: displayText(e.why, 400) } : {}),
      ...(e.detail ? { detail: displayText(e.detail, 400) } : {}),
      at: new Date().toISOString(),
    };
    this.state.entries.push(entry);
    if (entry.verdict === 'refused') {
      this.state.refused += 1;
      const refused = this.state.entries.filter((x) => x.verdict === 'refused');
      if (refused.length > LEDGER_REFUSED_KEPT) {
        const drop = refused[0]!;
        this.state.entries.splice(this.state.entries.indexOf(drop), 1);
        this.state.dropped += 1;
      }
    }
    return entry;
  }
}
