export { Pkcs11KeyCustody, type Pkcs11Options } from './pkcs11-key-custody';
