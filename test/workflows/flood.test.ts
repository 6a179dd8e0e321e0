/**
 * A flood of junk signals on a REAL dev server: a release parked at the gate takes 20,000 signals with a
 * mistyped name and one `approve` whose name is 1 MB of text. The server may refuse signals past its
 * per-execution limit; whatever it accepted, the workflow records as refused in a bounded ledger (the last
 * REFUSED_KEPT entries, each cut short, plus a count), so `gantry status` still answers with a small status,
 * and the release can still be approved by update and finish. No timing is asserted: only that it copes.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { TestWorkflowEnvironment } from '@temporalio/testing';
import type { WorkflowBundleWithSourceMap } from '@temporalio/worker';
import { approveSignal, approveUpdate } from '../../src/shared/release';
import { REFUSED_KEPT } from '../../src/shared/text';
import { fakeActivities } from '../helpers/fake-activities';
import { devServerEnv } from '../helpers/servers';
import { BEFORE_GATE, bundleReleaseWorkflow, gateOpen, testInput, waitForStatus, withRelease, type ReleaseHandle } from './harness';

let env: TestWorkflowEnvironment;
let bundle: WorkflowBundleWithSourceMap;

beforeAll(async () => {
  [env, bundle] = await Promise.all([devServerEnv(), bundleReleaseWorkflow()]);
});

afterAll(async () => {
  await env?.teardown();
});

const TYPOS = 20_000;
const IN_FLIGHT = 64;
const MB = 1024 * 1024;

interface Sent {
  accepted: number;
  refused: number;
  /** Refusal messages (cut), with how often each came. */
  reasons: Map<string, number>;
}

/** Send `count` signals named `name`, at most `inFlight` at a time; a refused send is counted, never thrown. */
async function flood(handle: ReleaseHandle, name: string, count: number, inFlight: number): Promise<Sent> {
  const sent: Sent = { accepted: 0, refused: 0, reasons: new Map() };
  let next = 0;
  const sender = async (): Promise<void> => {
    while (next < count) {
      const i = next++;
      try {
        await handle.signal(name, { approver: `alice-${i}` });
        sent.accepted += 1;
      } catch (err) {
        sent.refused += 1;
        const why = (err instanceof Error ? err.message : String(err)).slice(0, 160);
        sent.reasons.set(why, (sent.reasons.get(why) ?? 0) + 1);
      }
    }
  };
  await Promise.all(Array.from({ length: inFlight }, sender));
  return sent;
}

describe('a flood of junk signals at the gate', () => {
  it('is recorded in a bounded ledger: status stays small and answers, and the release can still be approved by update', { timeout: 600_000 }, async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open', 60_000);

      // First, so the per-execution signal limit cannot refuse it: an approval whose name is 1 MB of text.
      let bigAccepted = 0;
      await handle.signal(approveSignal, { approver: 'a'.repeat(MB) }).then(() => { bigAccepted = 1; }, (err: unknown) => {
        console.log(`flood: the server refused the 1 MB approve signal: ${err instanceof Error ? err.message : String(err)}`);
      });

      const sent = await flood(handle, 'aprove', TYPOS, IN_FLIGHT);
      console.log(`flood: ${TYPOS} 'aprove' signals, ${sent.accepted} accepted, ${sent.refused} refused by the server; 1 MB approve signal ${bigAccepted ? 'accepted' : 'refused'}`);
      for (const [why, n] of sent.reasons) console.log(`flood:   ${n} × ${why}`);
      expect(sent.accepted + sent.refused).toBe(TYPOS);
      expect(sent.accepted).toBeGreaterThan(0);

      const expected = sent.accepted + bigAccepted;
      const s = await waitForStatus(handle, (x) => x.gate.refusedCount >= expected, `${expected} refused signals to be recorded`, 300_000);
      const json = JSON.stringify(s);
      console.log(`flood: status is ${json.length} characters; gate.refusedCount ${s.gate.refusedCount}, ${s.gate.refused.length} kept`);
      expect(s.gate.refusedCount).toBe(expected);
      expect(json.length).toBeLessThan(MB);
      expect(s.gate.refused.length).toBeLessThanOrEqual(REFUSED_KEPT);
      expect(s.gate.refused.length).toBe(Math.min(REFUSED_KEPT, expected));
      for (const r of s.gate.refused) {
        expect(JSON.stringify(r).length).toBeLessThan(600);
        expect(r).toMatchObject({ name: 'aprove', via: 'signal', why: 'there is no signal named "aprove"; the signals are approve, reject, decide, cancel' });
      }
      // None of it counted, and the release is still waiting at the gate.
      expect(s.gate.state).toBe('open');
      expect(s.gate.approvals).toEqual([]);
      expect(s.outcome).toBeUndefined();
      expect(fake.calls).toEqual(BEFORE_GATE);

      const answer = await handle.executeUpdate(approveUpdate, { args: [{ approver: 'alice' }] });
      expect(answer).toMatchObject({ gate: 'approved', approvals: 1 });
      const result = await handle.result();
      expect(result.outcome).toBe('succeeded');
      expect(result.gate.approvals.map((v) => [v.approver, v.via])).toEqual([['alice', 'update']]);
      expect(result.gate.refusedCount).toBe(expected);
      expect(fake.calls).toContain('deploy:production');
      const d = await handle.describe();
      console.log(`flood: the release's history has ${d.historyLength} events (${d.historySize} bytes)`);
    });
  });

  it('records a 1 MB approver name cut to a short entry', { timeout: 120_000 }, async () => {
    const fake = fakeActivities();
    await withRelease(env, bundle, fake, testInput(), async ({ handle }) => {
      await waitForStatus(handle, gateOpen, 'the approval gate to open', 60_000);
      await handle.signal(approveSignal, { approver: 'a'.repeat(MB) });
      const s = await waitForStatus(handle, (x) => x.gate.refusedCount === 1, 'the big signal to be recorded', 60_000);
      expect(s.gate.refused[0]).toMatchObject({
        name: 'approve', via: 'signal', approver: `${'a'.repeat(63)}…`,
        why: `malformed approve: "approver" is ${MB} characters long; names are at most 64; send {"approver": "<name>", "reason": "optional"}`,
      });
      expect(JSON.stringify(s.gate.refused[0]).length).toBeLessThan(600);
      expect(s.gate.approvals).toEqual([]);
      await handle.executeUpdate(approveUpdate, { args: [{ approver: 'bob' }] });
      expect((await handle.result()).outcome).toBe('succeeded');
    });
  });
});
