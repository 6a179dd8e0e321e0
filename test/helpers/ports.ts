/** A TCP port free on 127.0.0.1 right now (the lab's helper, shared with the tests). */
export { freePort } from '../../src/lab/daemon';
