/**
 * The announce step's summary fields (webhookSent, auditLogged, notesPath…), derived from its channels' results.
 * Pure, with type imports only: the release workflow derives them too, from the per-channel deliveries in its
 * history (src/workflows/run.ts), and the single-activity announce (announce.ts) from the channels it ran.
 */
import type { AnnounceChannelResult, AnnounceResult } from '../types';

export function announceSummary(channels: AnnounceChannelResult[]): Omit<AnnounceResult, 'attempt' | 'channels'> {
  const done = (name: string) => channels.find((c) => c.channel === name && c.ok && !c.skipped);
  const artifacts = done('artifacts');
  const github = done('github');
  return {
    webhookSent: Boolean(done('webhook')),
    auditLogged: Boolean(done('audit')),
    ...(artifacts?.files?.notes ? { notesPath: artifacts.files.notes } : {}),
    ...(artifacts?.files?.metadata ? { metadataPath: artifacts.files.metadata } : {}),
    ...(artifacts?.files?.manifest ? { manifestPath: artifacts.files.manifest } : {}),
    ...(artifacts?.files?.signature ? { manifestSignaturePath: artifacts.files.signature } : {}),
    ...(github?.url ? { githubReleaseUrl: github.url } : {}),
  };
}

/** One line naming every channel's result, for the step's outputs in status: `audit ok; github skipped; webhook FAILED`. */
export function channelsLine(channels: AnnounceChannelResult[]): string {
  return channels.map((c) => `${c.channel} ${c.skipped ? 'skipped' : c.ok ? 'ok' : 'FAILED'}`).join('; ');
}
