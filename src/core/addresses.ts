import { BlockList, isIP } from 'node:net';

/** IPv4 peers arrive on a dual-stack socket as ::ffff:a.b.c.d; compare them as IPv4. */
export const plainAddress = (a: string) => (a.startsWith('::ffff:') && isIP(a.slice(7)) === 4 ? a.slice(7) : a);

/** A list of addresses and CIDR blocks (validated by the configuration), IPv4-mapped IPv6 handled. */
export class AddressBlocks {
  private list = new BlockList();
  readonly empty: boolean;

  constructor(blocks: string[]) {
    for (const b of blocks) {
      const [addr, bits] = b.split('/');
      const family = isIP(addr!) === 4 ? 'ipv4' : 'ipv6';
      this.list.addSubnet(addr!, bits === undefined ? (family === 'ipv4' ? 32 : 128) : Number(bits), family);
    }
    this.empty = blocks.length === 0;
  }

  has(address: string | undefined): boolean {
    if (this.empty || !address) return false;
    const a = plainAddress(address);
    const family = isIP(a);
    return family !== 0 && this.list.check(a, family === 4 ? 'ipv4' : 'ipv6');
  }
}
