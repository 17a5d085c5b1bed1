#!/usr/bin/env node
/**
 * dnsmasq `--dhcp-script` hook: reports each lease event to the provisioning service, which turns
 * it into a discovery observation (see discovery/dhcp-events.ts for the document it posts).
 *
 * dnsmasq runs it as `hook add|old|del <MAC> <IP> [hostname]` with the client's DHCP facts in
 * DNSMASQ_* variables. Configuration comes from dnsmasq's own environment:
 *   DHCP_LEASE_HOOK_URL           where to POST, e.g. https://provisioning.example/api/v1/discovery/dhcp-events
 *   DHCP_LEASE_HOOK_API_KEY_FILE  file holding the API key (role `reporter`), sent as a bearer token
 *   DHCP_LEASE_HOOK_TIMEOUT_MS    how long one POST may take (default 2000, at most 5000)
 *
 * dnsmasq runs scripts one at a time, so a slow service would delay the next lease's report: the
 * POST is bounded, and the hook always exits 0 (a lost event is caught by the next sweep or
 * renewal; a failing hook would only fill dnsmasq's log). Plain JavaScript with no dependencies,
 * so it starts fast on the DHCP server and needs nothing installed but Node.
 */
import { readFileSync } from 'node:fs';

const leaseEvents = new Set(['add', 'old', 'del']);
const defaultTimeoutMs = 2000;
const maxTimeoutMs = 5000;
const hookVersion = 1;

/** DNSMASQ_* variables forwarded, by the name the service reads them under. */
const forwardedVariables = {
  vendorClass: 'DNSMASQ_VENDOR_CLASS',
  requestedOptions: 'DNSMASQ_REQUESTED_OPTIONS',
  clientId: 'DNSMASQ_CLIENT_ID',
  suppliedHostname: 'DNSMASQ_SUPPLIED_HOSTNAME',
  interface: 'DNSMASQ_INTERFACE',
  circuitId: 'DNSMASQ_CIRCUIT_ID',
  remoteId: 'DNSMASQ_REMOTE_ID',
  subscriberId: 'DNSMASQ_SUBSCRIBER_ID',
  relayAddress: 'DNSMASQ_RELAY_ADDRESS',
  domain: 'DNSMASQ_DOMAIN',
  tags: 'DNSMASQ_TAGS',
  leaseExpires: 'DNSMASQ_LEASE_EXPIRES',
  timeRemaining: 'DNSMASQ_TIME_REMAINING',
  oldHostname: 'DNSMASQ_OLD_HOSTNAME',
};

function log(message) {
  process.stderr.write(`dhcp-lease-hook: ${message}\n`);
}

async function main() {
  const [event, macAddress, ip, hostname] = process.argv.slice(2);
  // `init`, `tftp`, `arp-add` and the like are not lease events.
  if (!leaseEvents.has(event)) return;

  const url = process.env.DHCP_LEASE_HOOK_URL;
  const keyFile = process.env.DHCP_LEASE_HOOK_API_KEY_FILE;
  if (!url || !keyFile) {
    log('DHCP_LEASE_HOOK_URL and DHCP_LEASE_HOOK_API_KEY_FILE must be set; event not reported');
    return;
  }
  let apiKey;
  try {
    apiKey = readFileSync(keyFile, 'utf8').trim();
  } catch (error) {
    log(`cannot read the API key file: ${error.message}`);
    return;
  }
  const requested = Number(process.env.DHCP_LEASE_HOOK_TIMEOUT_MS);
  const timeoutMs = Number.isFinite(requested) && requested > 0 ? Math.min(requested, maxTimeoutMs) : defaultTimeoutMs;

  const lease = { hookVersion, event, macAddress, ip, observedAt: new Date().toISOString() };
  if (hostname) lease.hostname = hostname;
  for (const [field, variable] of Object.entries(forwardedVariables)) {
    const value = process.env[variable];
    if (value !== undefined && value !== '') lease[field] = value;
  }
  // Further user classes come as DNSMASQ_USER_CLASS0..n.
  const userClasses = Object.keys(process.env)
    .filter((name) => /^DNSMASQ_USER_CLASS\d+$/.test(name))
    .sort((a, b) => Number(a.slice(18)) - Number(b.slice(18)))
    .map((name) => process.env[name]);
  if (userClasses.length > 0) lease.userClasses = userClasses;

  try {
    const response = await fetch(url, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` },
      body: JSON.stringify(lease),
      signal: AbortSignal.timeout(timeoutMs),
    });
    if (!response.ok) log(`the service answered ${response.status} for ${event} ${macAddress} ${ip}`);
  } catch (error) {
    log(`could not report ${event} ${macAddress} ${ip}: ${error.name === 'TimeoutError' ? `no answer within ${timeoutMs} ms` : error.message}`);
  }
}

await main();
process.exit(0);
