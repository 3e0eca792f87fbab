import { spawnSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** A certificate and its key, as PEM files, and the certificate's SHA-256 fingerprint as Countersign's config writes it. */
export interface Issued {
  cert: string;
  key: string;
  /** "sha256:" and the lower-case hex of the SHA-256 of the DER certificate. */
  fingerprint: string;
}

/** A throwaway CA with a server certificate (127.0.0.1, localhost) and client certificates, made by openssl. */
export interface Pki {
  dir: string;
  /** The CA's certificate (PEM file). */
  ca: string;
  server: Issued;
  clients: Record<string, Issued>;
}

/**
 * Makes a CA and certificates under it in `dir` with openssl (EC P-256, two days): a server
 * certificate for 127.0.0.1 and localhost (serverAuth), and one client certificate per name
 * (clientAuth, the name as CN and DNS SAN). Each CA is new, so two calls give two CAs that do
 * not trust each other's certificates. The slapd helper makes its LDAPS certificates the same
 * way.
 */
export function makePki(dir: string, opts: { name: string; clients: string[] }): Pki {
  const run = (args: string[]) => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
    if (r.status !== 0) throw new Error(`openssl ${args.join(' ')} failed:\n${r.stderr}`);
  };
  const file = (name: string) => join(dir, `${opts.name}-${name}`);
  const newKey = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes'];
  const ca = file('ca.pem');
  const caKey = file('ca.key');
  run(['req', '-x509', ...newKey, '-keyout', caKey, '-out', ca, '-days', '2', '-subj', `/CN=Countersign test CA ${opts.name}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
  const issue = (name: string, cn: string, ext: string): Issued => {
    const cert = file(`${name}.pem`);
    const key = file(`${name}.key`);
    writeFileSync(file(`${name}.ext`), `${ext}\nbasicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\n`);
    run(['req', ...newKey, '-keyout', key, '-out', file(`${name}.csr`), '-subj', `/CN=${cn}`]);
    run(['x509', '-req', '-in', file(`${name}.csr`), '-CA', ca, '-CAkey', caKey, '-CAcreateserial', '-out', cert, '-days', '2', '-extfile', file(`${name}.ext`)]);
    const fingerprint = `sha256:${new X509Certificate(readFileSync(cert)).fingerprint256.replaceAll(':', '').toLowerCase()}`;
    return { cert, key, fingerprint };
  };
  const server = issue('server', '127.0.0.1', 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth');
  const clients: Record<string, Issued> = {};
  for (const name of opts.clients) clients[name] = issue(`client-${name}`, name, `subjectAltName=DNS:${name}\nextendedKeyUsage=clientAuth`);
  return { dir, ca, server, clients };
}
