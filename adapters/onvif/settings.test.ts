import { describe, expect, it } from 'vitest';
import { onvifCameraTemplateSettings, onvifDeviceSettings, onvifProtocolSettings } from './settings';

const valid = {
  hostname: 'cam-lobby-01',
  ntp: { servers: ['10.0.0.1', 'ntp.site.internal'] },
  timezone: 'CET-1CEST,M3.5.0,M10.5.0/3',
  management: { httpEnabled: false },
};

describe('ONVIF settings', () => {
  it('accepts POSIX TZ strings, which is what ONVIF devices take, and refuses IANA names', () => {
    expect(onvifDeviceSettings.safeParse(valid).success).toBe(true);
    expect(onvifDeviceSettings.safeParse({ ...valid, timezone: 'UTC0' }).success).toBe(true);
    expect(onvifDeviceSettings.safeParse({ ...valid, timezone: 'Europe/Berlin' }).success).toBe(false);
  });

  it('refuses unknown keys and NTP servers that are neither names nor addresses', () => {
    expect(onvifDeviceSettings.safeParse({ ...valid, extra: 1 }).success).toBe(false);
    expect(onvifDeviceSettings.safeParse({ ...valid, ntp: { servers: ['not a host'] } }).success).toBe(false);
    expect(onvifDeviceSettings.safeParse({ ...valid, ntp: { servers: [] } }).success).toBe(false);
  });

  it('says a certificate is needed exactly when HTTP is to be turned off', () => {
    expect(onvifProtocolSettings.requiresDeviceCertificate(valid)).toContain('httpEnabled');
    expect(onvifProtocolSettings.requiresDeviceCertificate({ ...valid, management: { httpEnabled: true } })).toBeUndefined();
  });

  it('offers a template whose placeholders render into valid settings', () => {
    const rendered = JSON.parse(
      JSON.stringify(onvifCameraTemplateSettings).replace('{{device.hostname}}', 'cam-1').replace(/\{\{device\.site\}\}/g, 'hq'),
    );
    expect(onvifDeviceSettings.safeParse(rendered).success).toBe(true);
  });
});
