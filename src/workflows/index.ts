export { releaseWorkflow } from './release';
export { laneWorkflow } from './lane';
export { freezeRegistryWorkflow } from './freezes';
