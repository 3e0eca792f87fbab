/**
 * The rules for Web Push endpoints on their own: which addresses are internal (in every
 * spelling an IP address has), and what push.webpush.allowedHosts matches. The transport and
 * enrolment that use them are tested in test/plugins/push-webpush.test.ts.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { addressClass, hostAllowed, refusedAddress, refusedEndpoint, refusedSubscriptionEndpoint } from '../../src/core/push-endpoints.js';

describe('push endpoint rules', () => {
  it('classes every internal address, IPv4, IPv6 and the IPv6 forms that carry an IPv4 address', () => {
    const table: [string, string | undefined][] = [
      ['127.0.0.1', 'loopback'], ['127.255.0.9', 'loopback'], ['::1', 'loopback'],
      ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:2', 'loopback'], ['[::ffff:127.0.0.1]', 'loopback'],
      ['2002:7f00:1::', 'loopback'], // 6to4 of 127.0.0.1
      ['10.0.0.1', 'private'], ['172.16.0.1', 'private'], ['172.31.255.254', 'private'], ['192.168.0.1', 'private'],
      ['fc00::1', 'private'], ['fdff:ffff::1', 'private'], ['::ffff:10.1.1.1', 'private'], ['64:ff9b::a00:1', 'private'],
      ['100.64.0.1', 'cgnat'], ['100.127.255.255', 'cgnat'],
      ['169.254.0.1', 'link-local'], ['fe80::1', 'link-local'], ['fe80::1%eth0', 'link-local'], ['febf::1', 'link-local'],
      ['169.254.169.254', 'metadata'], ['::ffff:169.254.169.254', 'metadata'], ['::ffff:a9fe:a9fe', 'metadata'],
      ['fd00:ec2::254', 'metadata'], ['100.100.100.200', 'metadata'],
      ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'], ['::', 'unspecified'], ['::ffff:0.0.0.0', 'unspecified'],
      ['224.0.0.1', 'multicast'], ['239.255.255.250', 'multicast'], ['ff02::1', 'multicast'],
      ['255.255.255.255', 'reserved'], ['240.0.0.1', 'reserved'], ['::127.0.0.1', 'reserved'], ['2001:db8::1', 'reserved'],
      // Public: the neighbours of the ranges above, and the push services' own.
      ['8.8.8.8', undefined], ['172.15.255.255', undefined], ['172.32.0.0', undefined], ['100.63.255.255', undefined],
      ['100.128.0.0', undefined], ['169.253.255.255', undefined], ['11.0.0.0', undefined], ['223.255.255.255', undefined],
      ['::ffff:8.8.8.8', undefined], ['64:ff9b::808:808', undefined], ['2002:808:808::', undefined],
      ['2a00:1450:4001:80b::200a', undefined], ['fbff::1', undefined], ['fec0::1', 'private'],
      ['push.example.org', undefined],
    ];
    for (const [address, want] of table) assert.equal(addressClass(address), want, address);
  });

  it('allowPrivateAddresses lets loopback, private and shared addresses through, never metadata, link-local or unspecified', () => {
    const open = { allowPrivateAddresses: true };
    const closed = { allowPrivateAddresses: false };
    for (const a of ['127.0.0.1', '10.1.2.3', 'fd00::1', '100.64.1.1']) {
      assert.equal(refusedAddress(a, open), undefined, a);
      assert.ok(refusedAddress(a, closed), a);
    }
    for (const a of ['169.254.169.254', 'fd00:ec2::254', '169.254.1.1', 'fe80::1', '0.0.0.0', '::', '224.0.0.1']) assert.ok(refusedAddress(a, open), a);
  });

  it('allowedHosts: a name matches itself, "*.suffix" any name below the suffix and not the suffix, without case or a trailing dot', () => {
    const list = ['fcm.googleapis.com', '*.push.services.mozilla.com', '*.notify.windows.com', 'web.push.apple.com'];
    const allowed = ['fcm.googleapis.com', 'updates.push.services.mozilla.com', 'a.b.push.services.mozilla.com', 'wns2-db5p.notify.windows.com', 'web.push.apple.com'];
    const refused = ['push.services.mozilla.com', 'evilpush.services.mozilla.com', 'fcm.googleapis.com.evil.org', 'xfcm.googleapis.com', 'apple.com', 'push.apple.com'];
    for (const h of allowed) assert.ok(hostAllowed(h, list), h);
    for (const h of refused) assert.ok(!hostAllowed(h, list), h);
    const policy = { allowPrivateAddresses: false, allowedHosts: list };
    assert.equal(refusedEndpoint(new URL('https://FCM.googleapis.com./fcm/send/x'), policy), undefined);
    assert.equal(refusedEndpoint(new URL('https://142.250.185.74/fcm/send/x'), policy), 'host-not-allowed', 'an address is not the listed name');
  });

  it('checks the scheme, and localhost names at enrolment; other names wait for the lookup at connect time', () => {
    const closed = { allowPrivateAddresses: false };
    const open = { allowPrivateAddresses: true };
    assert.equal(refusedEndpoint(new URL('http://push.example.org/x'), open), 'scheme', 'http: only on loopback');
    assert.equal(refusedEndpoint(new URL('http://127.0.0.1:1/x'), closed), 'scheme');
    assert.equal(refusedEndpoint(new URL('http://127.0.0.1:1/x'), open), undefined);
    assert.equal(refusedEndpoint(new URL('http://localhost:1/x'), open), undefined);
    assert.equal(refusedEndpoint(new URL('https://0x7f.1/x'), closed), 'loopback', 'the URL parser spells the address out');
    assert.equal(refusedEndpoint(new URL('https://localhost/x'), closed), undefined, 'a name: the transport’s lookup decides');
    assert.equal(refusedSubscriptionEndpoint(new URL('https://localhost/x'), closed), 'loopback');
    assert.equal(refusedSubscriptionEndpoint(new URL('https://a.b.localhost./x'), closed), 'loopback');
    assert.equal(refusedSubscriptionEndpoint(new URL('https://localhost/x'), open), undefined);
    assert.equal(refusedSubscriptionEndpoint(new URL('https://push.example.org/x'), closed), undefined);
  });
});
