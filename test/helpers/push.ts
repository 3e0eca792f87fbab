import { generateKeyPairSync } from 'node:crypto';
import createFcmTransport from '../../plugins/push-fcm/index.js';
import createApnsTransport from '../../plugins/push-apns/index.js';
import type { PushTransport } from '../../src/core/push.js';
import { FakeApns } from './fake-apns.js';
import { FakeFcm, selfSignedCertificate } from './fake-fcm.js';

export const FCM_PROJECT = 'countersign-e2e';
export const APNS_TOPIC = 'org.countersign.authenticator';

/** Local FCM and APNs servers and the real transports pointed at them. */
export async function pushServices(): Promise<{ fcm: FakeFcm; apns: FakeApns; transports: () => PushTransport[]; close(): Promise<void> }> {
  const tls = selfSignedCertificate();
  const fcm = await FakeFcm.start({ tls, projectId: FCM_PROJECT });
  const rsa = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const email = `push@${FCM_PROJECT}.iam.gserviceaccount.com`;
  fcm.addServiceAccount(email, rsa.publicKey);
  const ec = generateKeyPairSync('ec', { namedCurve: 'prime256v1' });
  const apns = await FakeApns.start({ tls, teamId: 'TEAM123456', keyId: 'KEY1234567', publicKey: ec.publicKey, topic: APNS_TOPIC });
  return {
    fcm,
    apns,
    transports: () => [
      createFcmTransport({
        projectId: FCM_PROJECT,
        serviceAccount: {
          client_email: email,
          private_key: rsa.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
          token_uri: fcm.tokenUri,
        },
        endpoint: fcm.url,
        ca: tls.cert,
        timeoutMs: 3000,
      }),
      createApnsTransport({
        token: { key: ec.privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), keyId: 'KEY1234567', teamId: 'TEAM123456' },
        production: false,
        topic: APNS_TOPIC,
        address: '127.0.0.1',
        port: apns.port,
        ca: tls.cert,
        timeoutMs: 3000,
      }),
    ],
    async close() {
      await fcm.close();
      await apns.close();
    },
  };
}

export const until = async <T>(probe: () => T | undefined | null | false, ms = 3000): Promise<T> => {
  for (const start = Date.now(); ; ) {
    const v = probe();
    if (v) return v;
    if (Date.now() - start > ms) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 10));
  }
};
