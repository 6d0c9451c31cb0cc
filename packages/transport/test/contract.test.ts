import { runTransportContract } from '@raftkv/testing/contracts';
import { formatAddress, MemoryNetwork, TcpTransport } from '../src/index.js';

/** Two TCP transports on 127.0.0.1, OS-chosen ports; each learns the other's address after binding. */
runTransportContract('TcpTransport', async () => {
  const options = { clusterId: 'contract', listen: { host: '127.0.0.1', port: 0 }, reconnectBackoffMinMs: 10, reconnectBackoffMaxMs: 100 };
  const a = new TcpTransport({ ...options, id: 'a' });
  const b = new TcpTransport({ ...options, id: 'b' });
  const [addressA, addressB] = await Promise.all([a.listen(), b.listen()]);
  a.setPeers(new Map([['b', formatAddress(addressB.host, addressB.port)]]));
  b.setPeers(new Map([['a', formatAddress(addressA.host, addressA.port)]]));
  return { a, b, close: async () => void (await Promise.all([a.close(), b.close()])) };
});

runTransportContract('MemoryTransport', () => {
  const network = new MemoryNetwork({ seed: 7 });
  const a = network.transport('a');
  const b = network.transport('b');
  return Promise.resolve({ a, b, close: async () => void (await Promise.all([a.close(), b.close()])) });
});
