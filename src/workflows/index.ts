export { releaseWorkflow } from './release';
export { laneWorkflow } from './lane';
