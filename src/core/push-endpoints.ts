/*
 * Which Web Push endpoints the server will talk to. A subscription's endpoint is chosen by
 * whoever enrols a browser, so without these rules one sign-in would make the server open a
 * connection per device to any address its owner names: the loopback interface, the
 * internal network, a cloud's metadata service. Core checks the URL when a subscription is
 * stored (a clear 400 at enrolment); the Web Push transport checks it again before each
 * send and checks every address the host name resolves to when it connects, which is the
 * guard that counts (a name may resolve elsewhere tomorrow: DNS rebinding).
 */
import { isIP } from 'node:net';

export interface PushEndpointPolicy {
  /**
   * Host names ("fcm.googleapis.com") or suffixes ("*.push.services.mozilla.com", any name
   * below it) an endpoint may name; undefined: any host whose addresses are public.
   */
  allowedHosts?: readonly string[];
  /**
   * Loopback, private (RFC 1918, fc00::/7) and shared (100.64/10) addresses are accepted, and
   * http: on loopback: a push service inside the network, or the tests' local one. Link-local,
   * metadata, unspecified, multicast and reserved addresses are refused even then.
   */
  allowPrivateAddresses: boolean;
}

/** Why an address is not a public unicast one. */
export type AddressClass = 'loopback' | 'private' | 'cgnat' | 'link-local' | 'metadata' | 'unspecified' | 'multicast' | 'reserved';

/** Why an endpoint is refused: an address class, a host outside push.webpush.allowedHosts, or a plain http: URL. */
export type EndpointRefusal = AddressClass | 'host-not-allowed' | 'scheme';

/** The classes push.webpush.allowPrivateAddresses lets through. */
const PRIVATE_CLASSES: ReadonlySet<AddressClass> = new Set(['loopback', 'private', 'cgnat']);

type Rule = [prefix: number[], bits: number, what: AddressClass | 'embedded-v4'];

// Most specific first: the first rule that matches decides.
const V4_RULES: Rule[] = [
  [[169, 254, 169, 254], 32, 'metadata'], // AWS, Azure, GCP, Oracle, OpenStack
  [[100, 100, 100, 200], 32, 'metadata'], // Alibaba Cloud
  [[0], 8, 'unspecified'], // "this network": 0.0.0.0 reaches the local host on Linux
  [[10], 8, 'private'],
  [[100, 64], 10, 'cgnat'],
  [[127], 8, 'loopback'],
  [[169, 254], 16, 'link-local'],
  [[172, 16], 12, 'private'],
  [[192, 0, 0], 24, 'reserved'], // IETF protocol assignments
  [[192, 0, 2], 24, 'reserved'], // documentation
  [[192, 168], 16, 'private'],
  [[198, 18], 15, 'reserved'], // benchmarking
  [[198, 51, 100], 24, 'reserved'],
  [[203, 0, 113], 24, 'reserved'],
  [[224], 4, 'multicast'],
  [[240], 4, 'reserved'], // and 255.255.255.255
];

const V6_RULES: Rule[] = [
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 128, 'unspecified'],
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1], 128, 'loopback'],
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff], 96, 'embedded-v4'], // IPv4-mapped ::ffff:a.b.c.d
  [[0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0], 96, 'reserved'], // IPv4-compatible (deprecated)
  [[0, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0], 96, 'embedded-v4'], // NAT64 64:ff9b::/96
  [[0, 0x64, 0xff, 0x9b, 0, 1], 48, 'private'], // local-use NAT64
  [[1, 0, 0, 0, 0, 0, 0, 0], 64, 'reserved'], // discard-only
  [[0x20, 0x01, 0x0d, 0xb8], 32, 'reserved'], // documentation
  [[0x20, 0x02], 16, 'embedded-v4'], // 6to4: 2002:a.b.c.d::/48
  [[0xfd, 0x00, 0x0e, 0xc2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02, 0x54], 128, 'metadata'], // AWS fd00:ec2::254
  [[0xfc], 7, 'private'], // unique local
  [[0xfe, 0x80], 10, 'link-local'],
  [[0xfe, 0xc0], 10, 'private'], // site-local (deprecated)
  [[0xff], 8, 'multicast'],
];

const matches = (bytes: number[], prefix: number[], bits: number) => {
  for (let i = 0; i < bits; i += 8) {
    const mask = bits - i >= 8 ? 0xff : (0xff << (8 - (bits - i))) & 0xff;
    if (((bytes[i / 8] ?? 0) & mask) !== ((prefix[i / 8] ?? 0) & mask)) return false;
  }
  return true;
};

function v6Bytes(ip: string): number[] {
  let text = ip;
  if (text.includes('.')) {
    // A dotted IPv4 tail (::ffff:127.0.0.1): two more hex groups.
    const at = text.lastIndexOf(':') + 1;
    const [a, b, c, d] = text.slice(at).split('.').map(Number) as [number, number, number, number];
    text = `${text.slice(0, at)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head, tail] = text.split('::') as [string, string | undefined];
  const left = head ? head.split(':') : [];
  const right = tail === undefined ? [] : tail ? tail.split(':') : [];
  const groups = tail === undefined ? left : [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return groups.flatMap((g) => {
    const n = parseInt(g, 16);
    return [n >> 8, n & 0xff];
  });
}

/** The class of an IP address that is not public unicast, or undefined for a public one (and for text that is not an address). */
export function addressClass(address: string): AddressClass | undefined {
  const ip = address.replace(/^\[|\]$/g, '').replace(/%.*$/, '');
  const family = isIP(ip);
  if (family === 0) return undefined;
  const bytes = family === 4 ? ip.split('.').map(Number) : v6Bytes(ip);
  const rules = family === 4 ? V4_RULES : V6_RULES;
  for (const [prefix, bits, what] of rules) {
    if (!matches(bytes, prefix, bits)) continue;
    if (what !== 'embedded-v4') return what;
    // The IPv4 address a mapped, NAT64 or 6to4 address reaches is what counts.
    const v4 = prefix[0] === 0x20 ? bytes.slice(2, 6) : bytes.slice(12, 16);
    return addressClass(v4.join('.'));
  }
  return undefined;
}

/** Why the server will not connect to this address, or undefined when it may. */
export function refusedAddress(address: string, policy: Pick<PushEndpointPolicy, 'allowPrivateAddresses'>): AddressClass | undefined {
  const what = addressClass(address);
  return what && !(policy.allowPrivateAddresses && PRIVATE_CLASSES.has(what)) ? what : undefined;
}

/** A URL's host as names are compared: lower case, no brackets, no trailing dot. */
export const endpointHost = (url: URL) => url.hostname.toLowerCase().replace(/^\[|\]$/g, '').replace(/\.$/, '');

/** RFC 6761: localhost and every name below it are the local host, whatever DNS says. */
const isLocalhostName = (host: string) => host === 'localhost' || host.endsWith('.localhost');

/** Whether a host is on the list: an exact name, or a name below a "*." suffix (not the suffix itself). */
export function hostAllowed(host: string, allowedHosts: readonly string[]): boolean {
  return allowedHosts.some((entry) => {
    const e = entry.toLowerCase().replace(/\.$/, '');
    return e.startsWith('*.') ? host.endsWith(e.slice(1)) && host.length > e.length - 1 : host === e;
  });
}

/**
 * What the transport checks before it connects: the scheme (https:, or http: on loopback
 * when private addresses are allowed), the host against allowedHosts, and an IP literal's
 * class (a literal is never looked up). Returns why the endpoint is refused, or undefined.
 * A name's addresses are checked as it connects, after DNS.
 */
export function refusedEndpoint(url: URL, policy: PushEndpointPolicy): EndpointRefusal | undefined {
  const host = endpointHost(url);
  const literal = isIP(host) !== 0;
  const loopback = literal ? addressClass(host) === 'loopback' : isLocalhostName(host);
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && policy.allowPrivateAddresses && loopback)) return 'scheme';
  if (policy.allowedHosts && !hostAllowed(host, policy.allowedHosts)) return 'host-not-allowed';
  return literal ? refusedAddress(host, policy) : undefined;
}

/**
 * What enrolment checks, without DNS: refusedEndpoint, and the localhost names (RFC 6761),
 * which are loopback whatever a resolver says. Any other name may resolve anywhere, now or
 * later; only the check at connect time can refuse it.
 */
export function refusedSubscriptionEndpoint(url: URL, policy: PushEndpointPolicy): EndpointRefusal | undefined {
  const refused = refusedEndpoint(url, policy);
  if (refused) return refused;
  return isLocalhostName(endpointHost(url)) && !policy.allowPrivateAddresses ? 'loopback' : undefined;
}

/** Words for a refusal, for the person enrolling and for the log; never the endpoint's path (its capability). */
export function describeRefusal(why: EndpointRefusal, host: string): string {
  switch (why) {
    case 'scheme':
      return 'endpoint must be an https: URL';
    case 'host-not-allowed':
      return `the push service ${host} is not one this server sends to (push.webpush.allowedHosts)`;
    default:
      return `${host} is ${ADDRESS_WORDS[why]}, which this server does not send pushes to`;
  }
}

const ADDRESS_WORDS: Record<AddressClass, string> = {
  loopback: 'a loopback address',
  private: 'a private address',
  cgnat: 'a shared (carrier-grade NAT) address',
  'link-local': 'a link-local address',
  metadata: 'a cloud metadata address',
  unspecified: 'the unspecified address',
  multicast: 'a multicast address',
  reserved: 'a reserved address',
};
