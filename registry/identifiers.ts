/**
 * The identifiers the service hands out and accepts for devices, serial numbers, sites and
 * tenants: one spelling everywhere, so an id taken from a request, a certificate or a URL path
 * always names the same thing.
 */
export const identifierPattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const identifierReason = 'must be 1-64 characters of letters, digits, ".", "_" or "-", starting with a letter or digit';
