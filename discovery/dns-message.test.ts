import { describe, expect, it } from 'vitest';
import { DnsFormatError, decodeDnsMessage, encodeDnsMessage, txtAttributes, type DnsMessage } from './dns-message';

const name = (...labels: string[]) => Buffer.concat([...labels.map((label) => Buffer.concat([Buffer.from([label.length]), Buffer.from(label)])), Buffer.from([0])]);
const bytes = (...values: number[]) => Buffer.from(values);

const empty = { answers: [], authorities: [], additionals: [] };

describe('DNS message codec', () => {
  it('encodes a PTR question byte for byte as RFC 1035 lays it out, with the mDNS unicast-response bit', () => {
    const query: DnsMessage = { id: 0x1234, response: false, questions: [{ name: '_http._tcp.local', type: 12, unicastResponse: true }], ...empty };
    expect(encodeDnsMessage(query)).toEqual(
      Buffer.concat([bytes(0x12, 0x34, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0), name('_http', '_tcp', 'local'), bytes(0, 12, 0x80, 1)]),
    );
  });

  it('compresses a name that repeats a suffix already written into a pointer to it', () => {
    const response: DnsMessage = {
      id: 0,
      response: true,
      authoritative: true,
      questions: [],
      answers: [{ name: '_http._tcp.local', type: 'PTR', target: 'Cam._http._tcp.local', ttl: 120 }],
      authorities: [],
      additionals: [{ name: 'cam.local', type: 'A', address: '10.0.0.5', ttl: 120, cacheFlush: true }],
    };
    const encoded = encodeDnsMessage(response);
    expect(encoded).toEqual(
      Buffer.concat([
        bytes(0, 0, 0x84, 0, 0, 0, 0, 1, 0, 0, 0, 1),
        name('_http', '_tcp', 'local'),
        bytes(0, 12, 0, 1, 0, 0, 0, 120, 0, 6),
        bytes(3, ...Buffer.from('Cam'), 0xc0, 12), // "Cam" + pointer to _http._tcp.local at offset 12
        bytes(3, ...Buffer.from('cam'), 0xc0, 23), // "cam" + pointer to local at offset 23
        bytes(0, 1, 0x80, 1, 0, 0, 0, 120, 0, 4, 10, 0, 0, 5),
      ]),
    );
    expect(decodeDnsMessage(encoded)).toEqual(response);
  });

  it('decodes hand-built SRV, TXT and AAAA records that use compression pointers', () => {
    const message = Buffer.concat([
      bytes(0xab, 0xcd, 0x84, 0, 0, 0, 0, 3, 0, 0, 0, 0),
      name('Door', '_http', '_tcp', 'local'), // offset 12
      bytes(0, 33, 0, 1, 0, 0, 0, 10, 0, 13, 0, 0, 0, 0, 0x1f, 0x90, 4, ...Buffer.from('door'), 0xc0, 28), // SRV 8080 door.local
      bytes(0xc0, 12, 0, 16, 0, 1, 0, 0, 0, 10, 0, 10, 4, ...Buffer.from('sn=7'), 4, ...Buffer.from('x=yz')),
      bytes(0xc0, 28 - 0, 0, 28, 0, 1, 0, 0, 0, 10, 0, 16, 0xfe, 0x80, ...Array(12).fill(0), 0, 1),
    ]);
    const decoded = decodeDnsMessage(message);
    expect(decoded.id).toBe(0xabcd);
    expect(decoded.answers[0]).toEqual({ name: 'Door._http._tcp.local', ttl: 10, type: 'SRV', priority: 0, weight: 0, port: 8080, target: 'door.local' });
    expect(decoded.answers[1]).toMatchObject({ name: 'Door._http._tcp.local', type: 'TXT' });
    expect(txtAttributes((decoded.answers[1] as { strings: Buffer[] }).strings)).toEqual({ sn: '7', x: 'yz' });
    expect(decoded.answers[2]).toEqual({ name: 'local', ttl: 10, type: 'AAAA', address: 'fe80::1' });
  });

  it('refuses hostile or broken messages with a DnsFormatError instead of looping or crashing', () => {
    const header = (answers: number) => bytes(0, 0, 0x84, 0, 0, 0, 0, answers, 0, 0, 0, 0);
    const cases: Buffer[] = [
      bytes(1, 2, 3), // shorter than a header
      Buffer.concat([header(1), bytes(0xc0, 12)]), // a name that points at itself
      Buffer.concat([header(1), bytes(0xc0, 40)]), // a pointer forward, past the end
      Buffer.concat([header(1), name('a'), bytes(0, 1, 0, 1, 0, 0, 0, 1, 0, 4, 10, 0)]), // A data cut short
      Buffer.concat([header(1), name('a'), bytes(0, 1, 0, 1, 0, 0, 0, 1, 0, 3, 10, 0, 0)]), // A record of 3 bytes
      Buffer.concat([header(1), name('a'), bytes(0, 16, 0, 1, 0, 0, 0, 1, 0, 2, 5, 0x61)]), // TXT string past its record
      Buffer.concat([header(1), bytes(0x40, 0x61)]), // reserved label type
      Buffer.concat([bytes(0, 0, 0x84, 0, 0xff, 0xff, 0, 0, 0, 0, 0, 0)]), // 65535 questions claimed
    ];
    for (const message of cases) expect(() => decodeDnsMessage(message), message.toString('hex')).toThrow(DnsFormatError);
  });

  it('refuses to encode a label longer than 63 bytes', () => {
    expect(() => encodeDnsMessage({ id: 0, response: false, questions: [{ name: `${'a'.repeat(64)}.local`, type: 1 }], ...empty })).toThrow(DnsFormatError);
  });

  it('reads TXT attributes case-insensitively, first occurrence winning, bare keys as true, without prototype keys', () => {
    const attributes = txtAttributes(['Model=M3045', 'model=other', 'ptz', '=ignored', '__proto__=x'].map((text) => Buffer.from(text)));
    expect(attributes).toEqual({ model: 'M3045', ptz: true, ['__proto__']: 'x' });
    expect(Object.getPrototypeOf(attributes)).toBe(Object.prototype);
  });
});
