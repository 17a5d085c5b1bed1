/**
 * A device's initial (factory) credentials: how requests spell them, and the vault purpose they are
 * sealed under until provisioning no longer needs them. Provisioning runs only learn that they exist.
 */
import { z } from 'zod';

export const initialCredentialsPurpose = 'initial-credentials';

export const credentialsSchema = z.object({ username: z.string().min(1).max(128), password: z.string().min(1).max(256) }).strict();
