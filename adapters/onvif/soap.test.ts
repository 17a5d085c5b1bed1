import { execFileSync } from 'node:child_process';
import { XMLParser } from 'fast-xml-parser';
import { describe, expect, it } from 'vitest';
import { digestAuthorization, parseDigestChallenge } from './http-digest';
import {
  el,
  escapeXml,
  isObject,
  MalformedSoapError,
  passwordDigest,
  readSoapEnvelope,
  renderXml,
  soapEnvelope,
  soapFaultOf,
  textOf,
  usernameTokenHeader,
  XmlValueError,
} from './soap';

const hostile = `pa<&"'>ss`;

describe('WS-Security UsernameToken', () => {
  const nonce = Buffer.from('nonce-bytes-0123', 'utf8');
  const created = '2026-11-28T04:30:07Z';

  it('computes PasswordDigest as Base64(SHA-1(nonce + created + password)), matching a vector made with openssl', () => {
    const input = Buffer.concat([nonce, Buffer.from(created), Buffer.from(hostile)]);
    const fromOpenssl = execFileSync('openssl', ['dgst', '-sha1', '-binary'], { input });
    expect(passwordDigest(nonce, created, hostile)).toBe(fromOpenssl.toString('base64'));
    // The same vector, fixed, so a change in the openssl call cannot hide a regression.
    expect(passwordDigest(nonce, created, hostile)).toBe('tbzzluQDAvh6AbmLFHrmX5QhGsg=');
  });

  it('puts nonce, created and the digest into the header, with the user name escaped', () => {
    const header = usernameTokenHeader({ username: `a<b&"c"`, password: hostile }, new Date('2026-11-28T04:30:07.456Z'), nonce);
    const { header: parsed } = readSoapEnvelope(soapEnvelope(el('tds:GetUsers'), [header]));
    const token = (parsed.Security as Record<string, never>).UsernameToken as Record<string, never>;
    expect(textOf(token.Username)).toBe(`a<b&"c"`);
    expect(textOf(token.Nonce)).toBe(nonce.toString('base64'));
    expect(textOf(token.Created)).toBe(created);
    expect(textOf(token.Password)).toBe(passwordDigest(nonce, created, hostile));
  });
});

describe('XML building', () => {
  it('escapes hostile values so a reader gets back exactly what was sent', () => {
    const xml = soapEnvelope(el('tds:SetUser', el('tds:User', el('tt:Username', 'x</tt:Username><tt:UserLevel>'), el('tt:Password', hostile))));
    expect(xml).not.toContain(hostile);
    const parsed = new XMLParser({ removeNSPrefix: true }).parse(xml);
    const user = parsed.Envelope.Body.SetUser.User;
    expect(user.Username).toBe('x</tt:Username><tt:UserLevel>');
    expect(user.Password).toBe(hostile);
    expect(user.UserLevel).toBeUndefined();
  });

  it('refuses characters that XML 1.0 cannot carry instead of sending a broken request', () => {
    expect(() => escapeXml('bell\u0007')).toThrow(XmlValueError);
    expect(() => renderXml(el('tt:Name', 'half \uD800 surrogate'))).toThrow(XmlValueError);
  });
});

describe('reading answers', () => {
  it('reads an ONVIF fault with nested subcodes and its reason', () => {
    const xml = `<?xml version="1.0"?><env:Envelope xmlns:env="http://www.w3.org/2003/05/soap-envelope" xmlns:ter="http://www.onvif.org/ver10/error"><env:Body><env:Fault><env:Code><env:Value>env:Receiver</env:Value><env:Subcode><env:Value>ter:Action</env:Value><env:Subcode><env:Value>ter:EnablingTlsFailed</env:Value></env:Subcode></env:Subcode></env:Code><env:Reason><env:Text xml:lang="en">no certificate</env:Text></env:Reason></env:Fault></env:Body></env:Envelope>`;
    expect(soapFaultOf(readSoapEnvelope(xml).body)).toEqual({
      code: 'Receiver',
      subcodes: ['Action', 'EnablingTlsFailed'],
      reason: 'no certificate',
    });
  });

  it('rejects XML that is not well-formed', () => {
    expect(() => readSoapEnvelope('<env:Envelope><env:Body><a></env:Body>')).toThrow(MalformedSoapError);
    expect(() => readSoapEnvelope('<notsoap/>')).toThrow(MalformedSoapError);
  });

  it('reads repeatable elements as lists even when one is sent', () => {
    const { body } = readSoapEnvelope(
      soapEnvelope(el('tds:GetScopesResponse', el('tds:Scopes', el('tt:ScopeDef', 'Fixed'), el('tt:ScopeItem', 'onvif://www.onvif.org/type/x')))),
    );
    const response = body.GetScopesResponse;
    expect(isObject(response) && Array.isArray(response.Scopes)).toBe(true);
  });
});

describe('HTTP digest', () => {
  // RFC 7616 section 3.9.1.
  const challenge = {
    realm: 'http-auth@example.org',
    nonce: '7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v',
    opaque: 'FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS',
    qop: 'auth' as const,
  };
  const request = { method: 'GET', uri: '/dir/index.html', username: 'Mufasa', password: 'Circle of Life' };
  const cnonce = 'f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ';

  it('answers the RFC 7616 MD5 and SHA-256 examples with their published responses', () => {
    expect(digestAuthorization({ ...challenge, algorithm: 'MD5' }, request, 1, cnonce)).toContain('response="8ca523f5e9506fed4657c9700eebdbec"');
    expect(digestAuthorization({ ...challenge, algorithm: 'SHA-256' }, request, 1, cnonce)).toContain(
      'response="753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"',
    );
  });

  it('picks the Digest challenge among several and ignores ones it cannot answer', () => {
    expect(parseDigestChallenge('Basic realm="x", Digest realm="cam", qop="auth,auth-int", algorithm=MD5, nonce="abc"')).toEqual({
      realm: 'cam',
      nonce: 'abc',
      algorithm: 'MD5',
      qop: 'auth',
    });
    expect(parseDigestChallenge('Digest realm="cam", nonce="abc", algorithm=SHA-512-256')).toBeUndefined();
    expect(parseDigestChallenge(undefined)).toBeUndefined();
  });
});
