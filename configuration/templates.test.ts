import { describe, expect, it } from 'vitest';
import { httpsProtocolSettings } from '../adapters/https/settings';
import { ValidationError } from '../foundation/errors';
import { resolveParameters, sampleParameters, sealedMarker } from './parameters';
import { renderSettings, renderTemplate, templateContextFor, type TemplateContext } from './templates';

const device = templateContextFor('acme', { deviceId: 'CAM-7', serialNumber: 'SN7', macAddress: '02:00:00:00:00:07', site: 'hq' });

const template = {
  templateId: 'lobby',
  protocol: 'https',
  body: {
    hostname: '{{device.hostname}}',
    timezone: 'UTC',
    site: '{{device.site}}',
    ntp: { servers: '{{params.ntpServers}}' },
    syslog: { host: 'syslog.{{device.site}}.internal', port: '{{params.syslogPort}}', protocol: 'tls' },
    tls: { minVersion: 'TLSv1.2' },
    management: { httpEnabled: false, passwordLogin: false },
    vlan: { id: '{{params.vlan}}' },
    users: [{ username: 'ops', password: '{{secret.opsPassword}}', role: 'operator' }],
  },
};

const declarations = {
  ntpServers: { type: 'list' as const },
  syslogPort: { type: 'integer' as const, default: 6514 },
  vlan: { type: 'integer' as const, minimum: 1, maximum: 4094 },
  opsPassword: { type: 'secret' as const },
};

function contextWith(values: Record<string, unknown>, secret: Record<string, string>): TemplateContext {
  const resolved = resolveParameters(declarations, values);
  expect(resolved.problems).toEqual([]);
  return { ...device, params: resolved.params, secret };
}

describe('rendering with per-device parameters', () => {
  it('puts each value in place with its own type, defaults filling the gaps', () => {
    const { settings } = renderSettings(httpsProtocolSettings, template, contextWith({ ntpServers: ['10.1.0.1', '10.1.0.2'], vlan: 42 }, { opsPassword: 'S3cure-Enough!' }));
    expect(settings).toMatchObject({
      hostname: 'cam-7',
      ntp: { servers: ['10.1.0.1', '10.1.0.2'] },
      syslog: { host: 'syslog.hq.internal', port: 6514 },
      vlan: { id: 42 },
      users: [{ username: 'ops', password: 'S3cure-Enough!', role: 'operator' }],
    });
  });

  it('says where each secret went, and renders the sealed marker where no plaintext is given', () => {
    const { settings, secretFields } = renderSettings(httpsProtocolSettings, template, contextWith({ ntpServers: ['10.1.0.1'], vlan: 7 }, { opsPassword: sealedMarker('opsPassword') }));
    expect(secretFields).toEqual([{ path: 'users[0].password', name: 'opsPassword' }]);
    expect((settings.users as { password: string }[])[0].password).toBe('[sealed:opsPassword]');
  });

  it('names the parameter that is missing or of the wrong type', () => {
    expect(resolveParameters(declarations, { vlan: 5000 }).problems).toEqual([
      { field: 'params.ntpServers', reason: 'no value for this device and no default in the template' },
      { field: 'params.vlan', reason: 'must be at most 4094' },
    ]);
    expect(resolveParameters(declarations, { ntpServers: 'one', vlan: 1 }).problems).toEqual([
      { field: 'params.ntpServers', reason: 'must be a list of strings' },
    ]);
  });

  it('refuses an undeclared parameter or secret, naming the field that uses it', () => {
    const render = (body: unknown) => () => renderTemplate(body, { ...device, params: {}, secret: {} });
    expect(render({ a: { b: 'x{{params.nope}}' } })).toThrowError(ValidationError);
    try {
      render({ a: { b: '{{secret.nope}}' } })();
    } catch (error) {
      expect((error as ValidationError).fields).toEqual([
        { field: 'body.a.b', reason: 'secret {{secret.nope}} is not declared by the template or not set for this device' },
      ]);
    }
    expect(render({ hostname: '{{device.constructor}}' })).toThrowError(/unknown template variable/);
  });

  it('refuses a list in the middle of a string', () => {
    expect(() => renderTemplate({ host: 'ntp-{{params.servers}}' }, { ...device, params: { servers: ['a'] } })).toThrowError(/can only stand alone/);
  });

  it('checks the rendered settings against the protocol schema, naming the field', () => {
    try {
      renderSettings(httpsProtocolSettings, template, contextWith({ ntpServers: ['not a host!'], vlan: 7 }, { opsPassword: 'x' }));
      expect.unreachable();
    } catch (error) {
      expect((error as ValidationError).fields.map((f) => f.field)).toEqual(['body.ntp.servers[0]']);
    }
  });
});

describe('sample values for checking a template when it is saved', () => {
  it('use the defaults, else values that fit the declared type, and markers for secrets', () => {
    expect(sampleParameters(declarations)).toEqual({
      params: { ntpServers: ['sample'], syslogPort: 6514, vlan: 1 },
      secret: { opsPassword: '[sealed:opsPassword]' },
    });
  });
});
