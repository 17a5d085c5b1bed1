import { describe, expect, it } from 'vitest';
import { NamespaceScriptError, networkNamespacesAvailable, runInNetworkNamespace } from './netns';

describe.runIf(networkNamespacesAvailable())('network namespace harness', () => {
  it('runs a script in a namespace that sees none of the host\'s interfaces, and a peer joined only by its veth link', async () => {
    const result = await runInNetworkNamespace<{ interfaces: string[]; peer: { interfaces: string[] } }>('test/fixtures/discovery/namespace-probe.ts', {
      input: { withPeer: true },
    });
    expect(result.interfaces.sort()).toEqual(['lo 127.0.0.1/8', 'probe0 10.99.0.1/30']);
    expect(result.peer.interfaces.sort()).toEqual(['eth0 10.99.0.2/30', 'lo 127.0.0.1/8']);
  });

  it('rejects with the script\'s stderr when the script fails', async () => {
    const failure = runInNetworkNamespace('test/fixtures/discovery/namespace-probe.ts', { input: { fail: true } });
    await expect(failure).rejects.toBeInstanceOf(NamespaceScriptError);
    await expect(failure).rejects.toThrow(/exited with 3[\s\S]*namespace probe failing on request/);
  });
});
