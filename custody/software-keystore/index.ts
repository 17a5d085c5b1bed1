export { SoftwareKeyStore } from './software-key-store';
