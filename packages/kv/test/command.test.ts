import { describe, expect, it } from 'vitest';
import { encode } from '@raftkv/codec';
import { ErrorCode } from '@raftkv/raft';
import { decodeCommand, encodeCommand, KV_LIMITS_DEFAULT, validateCommand } from '../src/index.js';
import type { Command } from '../src/index.js';
import { bytes, thrownCode } from './helpers.js';

describe('command encoding', () => {
  it.each<[string, Command]>([
    ['put', { type: 'put', key: 'a/b/c', value: bytes('v') }],
    ['put with a session', { type: 'put', key: 'k', value: new Uint8Array(0), session: { clientId: 'c1', seq: 7 } }],
    ['delete', { type: 'delete', key: 'é/😀' }],
    ['cas on a modIndex', { type: 'cas', key: 'k', value: bytes('x'), expect: { modIndex: 12 } }],
    ['cas on absence, with a session', { type: 'cas', key: 'k', value: bytes('x'), expect: { absent: true }, session: { clientId: 'c', seq: 0 } }],
  ])('round-trips %s', (_name, command) => {
    const decoded = decodeCommand(encodeCommand(command));
    // msgpack gives bytes back as a Buffer: compare the bytes, not the class.
    const plain = (c: Command) => ({ ...c, ...('value' in c ? { value: Buffer.from(c.value).toString('hex') } : {}) });
    expect(plain(decoded)).toEqual(plain(command));
  });

  it.each<[string, Uint8Array]>([
    ['empty bytes', new Uint8Array(0)],
    ['bytes that are not msgpack', new Uint8Array([0xc1, 0xc1])],
    ['a msgpack number', encode(42)],
    ['trailing bytes', new Uint8Array([...encode({ type: 'delete', key: 'k' }), 0])],
    ['an unknown type', encode({ type: 'rename', key: 'k' })],
    ['an unknown field', encode({ type: 'delete', key: 'k', extra: 1 })],
    ['an empty key', encode({ type: 'delete', key: '' })],
    ['a key that is not a string', encode({ type: 'delete', key: 5 })],
    ['a value that is not bytes', encode({ type: 'put', key: 'k', value: 'text' })],
    ['a cas without expectation', encode({ type: 'cas', key: 'k', value: bytes('v') })],
    ['a cas expecting absent: false', encode({ type: 'cas', key: 'k', value: bytes('v'), expect: { absent: false } })],
    ['a cas expecting a negative modIndex', encode({ type: 'cas', key: 'k', value: bytes('v'), expect: { modIndex: -1 } })],
    ['a session without clientId', encode({ type: 'delete', key: 'k', session: { seq: 1 } })],
    ['a session with a fractional seq', encode({ type: 'delete', key: 'k', session: { clientId: 'c', seq: 1.5 } })],
    ['a session with an oversized clientId', encode({ type: 'delete', key: 'k', session: { clientId: 'c'.repeat(257), seq: 1 } })],
  ])('decodeCommand refuses %s with COMMAND_INVALID', (_name, data) => {
    expect(thrownCode(() => decodeCommand(data))).toBe(ErrorCode.COMMAND_INVALID);
  });

  it('encodeCommand refuses a key that is not valid UTF-8', () => {
    expect(thrownCode(() => encodeCommand({ type: 'delete', key: 'a\uD800' }))).toBe(ErrorCode.COMMAND_INVALID);
  });
});

describe('validateCommand admission limits', () => {
  const put = (key: string, valueBytes = 1): Command => ({ type: 'put', key, value: new Uint8Array(valueBytes) });

  it('accepts keys and values exactly at the limits', () => {
    expect(thrownCode(() => validateCommand(put('k'.repeat(KV_LIMITS_DEFAULT.keyBytesMax), KV_LIMITS_DEFAULT.valueBytesMax)))).toBeUndefined();
  });

  it('refuses an empty key or one with a lone surrogate with KEY_INVALID', () => {
    expect(thrownCode(() => validateCommand(put('')))).toBe(ErrorCode.KEY_INVALID);
    expect(thrownCode(() => validateCommand(put('x\uDC00y')))).toBe(ErrorCode.KEY_INVALID);
    expect(thrownCode(() => validateCommand({ type: 'delete', key: '\uD83D' }))).toBe(ErrorCode.KEY_INVALID);
  });

  it('counts key size in UTF-8 bytes: KEY_TOO_LARGE', () => {
    // 1366 three-byte characters: 4098 bytes, though only 1366 UTF-16 code units.
    expect(thrownCode(() => validateCommand(put('€'.repeat(1366))))).toBe(ErrorCode.KEY_TOO_LARGE);
    expect(thrownCode(() => validateCommand(put('€'.repeat(1365))))).toBeUndefined();
  });

  it('refuses a value over the limit with VALUE_TOO_LARGE, for put and cas', () => {
    expect(thrownCode(() => validateCommand(put('k', KV_LIMITS_DEFAULT.valueBytesMax + 1)))).toBe(ErrorCode.VALUE_TOO_LARGE);
    const cas: Command = { type: 'cas', key: 'k', value: new Uint8Array(11), expect: { absent: true } };
    expect(thrownCode(() => validateCommand(cas, { keyBytesMax: 10, valueBytesMax: 10 }))).toBe(ErrorCode.VALUE_TOO_LARGE);
    expect(thrownCode(() => validateCommand(put('12345678901'), { keyBytesMax: 10, valueBytesMax: 10 }))).toBe(ErrorCode.KEY_TOO_LARGE);
  });

  it('refuses a malformed session with COMMAND_INVALID', () => {
    const command: Command = { type: 'delete', key: 'k', session: { clientId: '', seq: 1 } };
    expect(thrownCode(() => validateCommand(command))).toBe(ErrorCode.COMMAND_INVALID);
  });
});
