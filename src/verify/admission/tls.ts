/**
 * The webhook's serving certificate when the operator brings none: a self-signed ECDSA P-256
 * certificate for the given DNS names and IP addresses, serverAuth only, valid for a year. Its
 * PEM is also the `caBundle` the ValidatingWebhookConfiguration must carry (base64).
 */
import '../../signing/reflect-metadata-shim.ts';
import { randomBytes, webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

x509.cryptoProvider.set(globalThis.crypto);

export interface ServingCertificate {
  certPem: string;
  keyPem: string;
}

/** Generate a self-signed serving certificate. */
export async function selfSignedServingCertificate(options: {
  dnsNames: string[];
  ipAddresses?: string[];
  validityDays?: number;
}): Promise<ServingCertificate> {
  const alg = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' };
  const keys = (await webcrypto.subtle.generateKey(alg, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const now = Date.now();
  const names = [
    ...options.dnsNames.map((value) => ({ type: 'dns' as const, value })),
    ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
  ];
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomBytes(16)
      .toString('hex')
      .replace(/^[89a-f]/, '1'),
    name: `CN=${options.dnsNames[0] ?? 'gatehouse-admission'}`,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + (options.validityDays ?? 365) * 86400_000),
    keys,
    signingAlgorithm: alg,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension(names),
    ],
  });
  const pkcs8 = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const keyPem = `-----BEGIN PRIVATE KEY-----\n${pkcs8
    .toString('base64')
    .replace(/(.{64})/g, '$1\n')
    .replace(/\n$/, '')}\n-----END PRIVATE KEY-----\n`;
  return { certPem: cert.toString('pem'), keyPem };
}
