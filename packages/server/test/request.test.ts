import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalPath, canonicalQuery, keyFromUrl } from '../src/request.js';

const KEY_BYTES_MAX = 4096;

/** Any valid key: well-formed text (no lone surrogate), not empty, within the byte limit. */
const key = fc.string({ unit: 'binary', minLength: 1, maxLength: 64 }).filter((k) => Buffer.byteLength(k, 'utf8') <= KEY_BYTES_MAX);
/** Keys made mostly of the characters URL handling treats specially. */
const trickyKey = fc
  .array(fc.constantFrom('.', '..', '/', '\\', '%', '%2e', '?', '#', ' ', '+', '&', '=', ';', '~', '!', "'", '(', ')', '*', 'é', '€', '😀', '\u0000', '\u007f', 'a'), { minLength: 1, maxLength: 12 })
  .map((parts) => parts.join(''));

describe('canonicalPath', () => {
  it('names exactly the key keyFromUrl decodes from it (property)', () => {
    fc.assert(
      fc.property(fc.oneof(key, trickyKey), (k) => {
        expect(keyFromUrl(canonicalPath(k), KEY_BYTES_MAX)).toBe(k);
      }),
      { numRuns: 2000 },
    );
  });

  it('spells a key one way only: unreserved characters and / as themselves, every other byte as an upper-case escape (property)', () => {
    fc.assert(
      fc.property(fc.oneof(key, trickyKey), (k) => {
        const path = canonicalPath(k);
        expect(path).toMatch(/^\/v1\/kv\/(?:[A-Za-z0-9\-._~/]|%[0-9A-F]{2})*$/);
        // Nothing a URL parser rewrites or cuts at (a raw backslash, `?`, `#`, an escaped dot) is in it.
        expect(path).not.toMatch(/[\\?#]|%2E/i);
      }),
      { numRuns: 2000 },
    );
  });

  it('keeps dots and slashes as written, so the key stays a/./b and tmp/../victim', () => {
    expect(canonicalPath('tmp/../victim')).toBe('/v1/kv/tmp/../victim');
    expect(canonicalPath('a/./b')).toBe('/v1/kv/a/./b');
    expect(canonicalPath('/lead')).toBe('/v1/kv//lead');
    expect(canonicalPath("a\\b?c#d e%f!'()*+é")).toBe('/v1/kv/a%5Cb%3Fc%23d%20e%25f%21%27%28%29%2A%2B%C3%A9');
  });

  it('refuses a string with a lone surrogate, which is no key', () => {
    expect(() => canonicalPath('a\uD800b')).toThrow(URIError);
  });
});

describe('canonicalQuery', () => {
  it('gives back every parameter, in order, repeated ones repeated (property)', () => {
    const text = fc.oneof(fc.string({ unit: 'binary', maxLength: 16 }), trickyKey);
    fc.assert(
      fc.property(fc.dictionary(text, fc.oneof(text, fc.array(text, { minLength: 1, maxLength: 3 }))), (query) => {
        const expected = Object.entries(query).flatMap(([name, value]) => (Array.isArray(value) ? value : [value]).map((v) => [name, v]));
        const encoded = canonicalQuery(query);
        expect(encoded === '' ? [] : [...new URLSearchParams(encoded.slice(1))]).toEqual(expected);
      }),
      { numRuns: 1000 },
    );
  });

  it('is empty without parameters', () => {
    expect(canonicalQuery({})).toBe('');
    expect(canonicalQuery({ cas: 'absent' })).toBe('?cas=absent');
    expect(canonicalQuery({ prefix: 'a/b c', limit: '5' })).toBe('?prefix=a%2Fb%20c&limit=5');
  });
});
