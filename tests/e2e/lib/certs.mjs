// Test PKI with the openssl CLI: a CA, server certs with SANs, client certs for mTLS.
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import path from 'node:path';

const ossl = (args, cwd) => execFileSync('openssl', args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });

// Returns {cert, key} paths of a new CA named name in dir.
export function makeCA(dir, name = 'test-ca') {
  const key = path.join(dir, `${name}.key`), cert = path.join(dir, `${name}.pem`);
  ossl(['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key,
    '-out', cert, '-days', '30', '-subj', `/CN=${name}`,
    '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  return { cert, key };
}

// Leaf signed by ca. sans: ['DNS:x', 'IP:127.0.0.1']; usage 'server' or 'client'.
export function makeLeaf(dir, ca, name, sans, usage = 'server') {
  const key = path.join(dir, `${name}.key`), csr = path.join(dir, `${name}.csr`);
  const cert = path.join(dir, `${name}.pem`), ext = path.join(dir, `${name}.ext`);
  ossl(['req', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', csr,
    '-subj', `/CN=${name}`], dir);
  writeFileSync(ext, [
    'basicConstraints=CA:FALSE',
    `extendedKeyUsage=${usage === 'client' ? 'clientAuth' : 'serverAuth'}`,
    sans && sans.length ? `subjectAltName=${sans.join(',')}` : '',
  ].filter(Boolean).join('\n') + '\n');
  ossl(['x509', '-req', '-in', csr, '-CA', ca.cert, '-CAkey', ca.key, '-CAcreateserial', '-out', cert,
    '-days', '30', '-extfile', ext], dir);
  return { cert, key };
}
