/**
 * Human views of a release: the plan, the status, shared time and duration formats. Pure functions over the
 * shared types, so `status`, `start --wait` and the tests see the same words.
 */
import { approveCommand, describeNeeds, gateRulesView, webUiInstruction } from '../shared/gate-rules';
import type { ReleaseInput, ReleasePlan, ReleaseStatus, StepStatus } from '../shared/release';
import { describeExecution, type ReleaseAddress, type ReleaseSnapshot } from './snapshot';
import { PLAIN, type Style } from './style';

/** `2026-11-23 09:01:24Z`: UTC, to the second, unambiguous in a shared on-call channel. */
export function formatTime(iso: string | Date | undefined): string {
  if (!iso) return '-';
  const d = typeof iso === 'string' ? new Date(iso) : iso;
  if (Number.isNaN(d.getTime())) return String(iso);
  return `${d.toISOString().slice(0, 19).replace('T', ' ')}Z`;
}

/** `0.4s`, `12s`, `3m04s`, `2h05m`. */
export function formatDuration(ms: number | undefined): string {
  if (ms === undefined || !Number.isFinite(ms) || ms < 0) return '-';
  if (ms < 10_000) return `${(ms / 1000).toFixed(1)}s`;
  const s = Math.round(ms / 1000);
  if (s < 60) return `${s}s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m}m${String(s % 60).padStart(2, '0')}s`;
  return `${Math.floor(m / 60)}h${String(m % 60).padStart(2, '0')}m`;
}

export function durationBetween(from: string | undefined, to: string | undefined): number | undefined {
  if (!from || !to) return undefined;
  return Date.parse(to) - Date.parse(from);
}

export function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

const STATE_MARK: Record<StepStatus['state'], string> = {
  succeeded: '✓',
  failed: '✗',
  running: '▶',
  pending: '·',
  skipped: '-',
};

function markStep(s: StepStatus, st: Style): string {
  const mark = STATE_MARK[s.state];
  if (s.state === 'succeeded') return st.ok(mark);
  if (s.state === 'failed') return st.bad(mark);
  if (s.state === 'running') return st.info(mark);
  return st.dim(mark);
}

export function formatOutputs(outputs: Record<string, string>): string {
  return Object.entries(outputs)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k}: ${v}`)
    .join(', ');
}

export function formatPlan(plan: ReleasePlan, input: ReleaseInput, startCommand: string, st: Style = PLAIN): string {
  const lines = [
    st.bold(`Dry run: release ${plan.service} ${plan.version}: nothing was started and nothing was changed.`),
    `  workflow id   ${plan.workflowId}`,
    `  tag           ${plan.tag}`,
    `  image         ${plan.image}`,
    `  requested by  ${input.requestedBy}`,
    ...(input.configSource ? [`  config        ${input.configSource}`] : []),
    '',
    'Plan:',
    ...plan.steps.map((s, i) => `  ${String(i + 1).padStart(2)}. ${st.bold(s.title)} (${s.step})\n      ${s.detail}`),
    '',
    `Start it with: ${startCommand}`,
  ];
  return lines.join('\n');
}

/** The Web UI's static details of a release: the plan in markdown. */
export function planMarkdown(plan: ReleasePlan, input: ReleaseInput): string {
  const esc = (s: string) => s.replaceAll('|', '\\|');
  return [
    `**Release ${plan.service} ${plan.version}** requested by **${input.requestedBy}**`,
    '',
    `Tag \`${plan.tag}\`, image \`${plan.image}\`. The gate ${describeNeeds([], gateRulesView(input))}.`,
    '',
    '| # | Step | What it does |',
    '|---|------|--------------|',
    ...plan.steps.map((s, i) => `| ${i + 1} | ${esc(s.title)} | ${esc(s.detail)} |`),
    '',
    `Approve: \`${approveCommand(plan.service, plan.version, gateRulesView(input))}\`. ${webUiInstruction(plan.service, plan.version, gateRulesView(input))}.`,
  ].join('\n');
}

export function formatStep(s: StepStatus, st: Style = PLAIN): string[] {
  const times = s.startedAt ? `${formatTime(s.startedAt)} → ${s.endedAt ? formatTime(s.endedAt) : '…'}` : '';
  const took = s.startedAt && s.endedAt ? formatDuration(durationBetween(s.startedAt, s.endedAt)) : '';
  const runs = s.runs > 1 ? ` in ${s.runs} runs` : '';
  const attempts = s.attempts > 0 ? `${plural(s.attempts, 'attempt')}${runs}` : '';
  const head = `  ${markStep(s, st)} ${s.title.padEnd(26)} ${s.state.padEnd(9)} ${attempts.padEnd(20)} ${times}${took ? `  (${took})` : ''}`;
  const lines = [head.trimEnd()];
  const out = formatOutputs(s.outputs);
  if (out) lines.push(`      ${st.dim(out)}`);
  if (s.error) lines.push(`      ${st.bad(`error: ${s.error}`)}`);
  return lines;
}

export interface StatusViewOptions {
  style?: Style;
  webUrl?: string | undefined;
}

export function formatStatus(addr: ReleaseAddress, snap: ReleaseSnapshot, opts: StatusViewOptions = {}): string {
  const st = opts.style ?? PLAIN;
  const d = snap.description;
  const s = snap.status;
  const lines: string[] = [];
  if (!s) {
    const f = d.fields;
    lines.push(st.bold(`Release ${addr.label}: ${describeExecution(d)}`));
    lines.push(`  workflow   ${d.workflowId} (run ${d.runId})`);
    lines.push(`  started    ${formatTime(d.startTime)}${d.closeTime ? ` · ended ${formatTime(d.closeTime)}` : ''}`);
    if (f.outcome) lines.push(`  outcome    ${f.outcome}`);
    if (opts.webUrl) lines.push(`  web ui     ${opts.webUrl}`);
    lines.push('');
    lines.push(st.warn(`The step-by-step status is not available: ${snap.statusProblem ?? 'unknown reason'}.`));
    lines.push(`\`gantry history ${addr.args}\` reads the timeline from the event history without a worker.`);
    return lines.join('\n');
  }

  const stageText = s.outcome ? `${s.outcome}` : s.stage;
  const colour = s.outcome === 'succeeded' || s.outcome === 'planned' ? st.ok : s.outcome ? st.bad : st.info;
  lines.push(st.bold(`Release ${s.request.service} ${s.request.version}: `) + colour(stageText));
  lines.push(`  workflow   ${s.workflowId} (run ${d.runId}, ${d.status.name.toLowerCase()})`);
  lines.push(`  requested  by ${s.request.requestedBy} at ${formatTime(s.startedAt)}${s.endedAt ? ` · ended ${formatTime(s.endedAt)} (${formatDuration(durationBetween(s.startedAt, s.endedAt))})` : ''}`);
  lines.push(`  config     ${s.input?.configSource ?? 'not resolved yet'}${s.requester.verified ? ` · started by ${s.requester.principal} (signed, key ${s.requester.fingerprint ?? '?'})` : ''}`);
  if (s.configNote) lines.push(st.warn(`  note       ${s.configNote}`));
  if (opts.webUrl) lines.push(`  web ui     ${opts.webUrl}`);
  lines.push(`  stage      ${s.stage}${s.environment ? ` · environment ${s.environment}` : ''}`);
  if (s.environments?.length) lines.push(`  path       ${s.environments.map((e) => `${e.name}${e.gated ? ' (gated)' : ''}: ${e.state}`).join(' → ')}`);
  if (s.hotfix) lines.push(st.warn(`  hotfix     skips ${s.hotfix.skipped.join(', ') || 'nothing'}: ${s.hotfix.reason}`));
  for (const [env, lane] of Object.entries(s.lanes ?? {})) {
    if (lane.state === 'waiting') {
      lines.push(st.warn(`  lane       waiting for the ${env} lane since ${formatTime(lane.since)}` +
        (lane.holder ? `: held by ${lane.holder.version} since ${formatTime(lane.holder.heldSince)}${lane.position ? `, this release is number ${lane.position} in line` : ''}` : '')));
    } else if (lane.state === 'held') {
      lines.push(`  lane       holds the ${env} lane since ${formatTime(lane.since)}`);
    }
  }
  const fz = s.gate.freeze;
  if (fz?.frozen && s.gate.state === 'open') {
    for (const f of fz.freezes) {
      lines.push(st.warn(`  frozen     ${f.kind === 'window' ? `deny window ${f.id}` : `by ${f.by ?? '?'}${f.since ? ` since ${formatTime(f.since)}` : ''}`}: ${f.reason}` +
        `${f.until ? ` (until ${formatTime(f.until)})` : f.kind === 'manual' ? ' (until unfrozen)' : ''}`));
    }
  }
  lines.push('');
  lines.push(`  ${s.message}`);
  lines.push('');
  lines.push(st.bold('Steps'));
  for (const step of s.steps) lines.push(...formatStep(step, st));
  lines.push('');
  lines.push(...formatGate(s, st));
  if (s.pendingDecision) {
    const p = s.pendingDecision;
    const stepTitle = s.steps.find((x) => x.name === p.step)?.title ?? p.step;
    lines.push('');
    lines.push(st.warn(st.bold(`Decision needed: ${stepTitle} failed after its retries`)) + ` (since ${formatTime(p.openedAt)}, aborts at ${formatTime(p.deadline)})`);
    lines.push(`  error: ${p.error}`);
    lines.push(`  retry: gantry decide retry ${s.request.service} ${s.request.version} --as <name> [--reason "…"]`);
    lines.push(`  abort: gantry decide abort ${s.request.service} ${s.request.version} --as <name> [--reason "…"]`);
    if (p.allowed?.includes('skip')) lines.push(`  skip:  gantry decide skip ${s.request.service} ${s.request.version} --as <name> --reason "…"`);
  }
  if (s.decisions.length > 0) {
    lines.push('');
    lines.push(st.bold('Decisions'));
    for (const dec of s.decisions) {
      lines.push(`  ${dec.decision} of ${dec.step} by ${dec.operator} at ${formatTime(dec.at)}${dec.reason ? `: ${dec.reason}` : ''}`);
    }
  }
  if (s.cancellation.requested) {
    lines.push('');
    lines.push(st.warn(`Cancellation requested at ${formatTime(s.cancellation.at)}${s.cancellation.note ? `: ${s.cancellation.note}` : ''}`));
  }
  if (s.outcome) {
    lines.push('');
    lines.push(`${st.bold('Outcome:')} ${colour(s.outcome)}: ${s.message}`);
  }
  return lines.join('\n');
}

function formatGate(s: ReleaseStatus, st: Style): string[] {
  const g = s.gate;
  const lines: string[] = [];
  for (const p of g.passed ?? []) {
    lines.push(`${st.bold(`Gate ${p.environment}:`)} ${p.state.replace('_', ' ')} by ${p.approvals.map((v) => v.approver).join(', ') || '—'}${p.closedAt ? ` at ${formatTime(p.closedAt)}` : ''}`);
  }
  const last = s.environments?.[s.environments.length - 1]?.name;
  const head = `${st.bold(g.environment && g.environment !== last ? `Approval gate (${g.environment}):` : 'Approval gate:')} ${g.state.replace('_', ' ')}, ${g.approvals.length} of ${g.required} approval(s); approvers ${g.approvers.join(', ')} (${g.identity})`;
  lines.push(head);
  if (g.rule) lines.push(`  rule: ${g.rule}`);
  if (g.state === 'open' && g.needs) lines.push(`  it ${g.needs}${g.digest ? `; approving image ${g.digest}` : ''}`);
  if (g.openedAt) lines.push(`  opened ${formatTime(g.openedAt)}${g.closedAt ? ` · closed ${formatTime(g.closedAt)}` : g.deadline ? ` · times out ${formatTime(g.deadline)}` : ''}`);
  for (const v of g.approvals) {
    lines.push(`  ${st.ok('✓')} approved by ${v.approver}${v.verified ? ` (signed, key ${v.fingerprint ?? '?'})` : ' (declared)'} at ${formatTime(v.at)} via ${v.via}${v.reason ? `: ${v.reason}` : ''}` +
      (v.changedToRejectAt ? ` — changed into a rejection at ${formatTime(v.changedToRejectAt)}` : ''));
  }
  for (const v of g.breakGlass ?? []) {
    lines.push(`  ${st.warn('⚠')} break-glass by ${v.approver}${v.verified ? ` (signed, key ${v.fingerprint ?? '?'})` : ' (declared)'} at ${formatTime(v.at)}: ${v.reason ?? ''}`);
  }
  if (g.rejection) {
    const r = g.rejection;
    lines.push(`  ${st.bad('✗')} rejected by ${r.approver} at ${formatTime(r.at)} via ${r.via}${r.reason ? `: ${r.reason}` : ''}`);
  }
  if (g.refused.length > 0) {
    lines.push(`  refused attempts${g.refusedCount > g.refused.length ? ` (${g.refusedCount} in all; the last ${g.refused.length} shown)` : ''}:`);
    for (const r of g.refused) {
      lines.push(`    ${st.warn('!')} ${r.name} ${r.approver ? `by ${r.approver} ` : ''}at ${formatTime(r.at)} via ${r.via}: ${r.why}`);
    }
  }
  if (g.state === 'open') {
    lines.push(`  approve: ${approveCommand(s.request.service, s.request.version, g)}`);
    lines.push(`  ${webUiInstruction(s.request.service, s.request.version, g)}.`);
  }
  return lines;
}
