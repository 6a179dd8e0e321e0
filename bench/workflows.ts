/** The benchmark worker's workflows: the shipped release workflow and the bare baseline, in one bundle. */
export { releaseWorkflow } from '../src/workflows';
export { bareWorkflow, signalThenActivityWorkflow } from './bare-workflow';
