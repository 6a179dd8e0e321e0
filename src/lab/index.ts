/** The local release lab (see lab.ts): start it, stop it, see what runs, clean up after it. */
export { startLab, stopLab, labStatus, cleanupLab, checkLabPrerequisites, PROVISION_HINT, WEBHOOK_ENV } from './lab';
export type { Lab, LabOptions, LabStatus, LabEnvironment } from './lab';
export { BASE_IMAGE } from './base-image';
export type { SampleRepo, SampleRevision } from './sample-repo';
export type { WebhookReceiver, WebhookRequest } from './webhook';
