import assert from 'node:assert/strict';
import { readFileSync, readdirSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';

/**
 * The rules docs/architecture.md states about which way imports point, kept by a test: core
 * imports nothing outside core; stores only core; plugins only core, configuration types and
 * themselves; a front imports another front only through the allow-list below, and the shared
 * browser layer (src/fronts/web) imports no front; nothing imports in a cycle.
 */
const root = resolve(new URL('..', import.meta.url).pathname);

interface Edge {
  to: string;
  typeOnly: boolean;
}

function sources(dir: string): string[] {
  return readdirSync(join(root, dir)).flatMap((name) => {
    const rel = join(dir, name);
    if (statSync(join(root, rel)).isDirectory()) return sources(rel);
    return name.endsWith('.ts') ? [rel] : [];
  });
}

/** Relative imports of every module (static, re-exports, dynamic), as paths from the root. */
function importGraph(files: string[]): Map<string, Edge[]> {
  const graph = new Map<string, Edge[]>();
  for (const file of files) {
    const text = readFileSync(join(root, file), 'utf8');
    const edges: Edge[] = [];
    const add = (spec: string, typeOnly: boolean) => {
      if (!spec.startsWith('.')) return;
      edges.push({ to: relative(root, resolve(root, dirname(file), spec.replace(/\.js$/, '.ts'))), typeOnly });
    };
    for (const m of text.matchAll(/^\s*(?:import|export)\s+(type\s+)?(?:[^'";]*?\sfrom\s+)?'([^']+)'/gm)) add(m[2]!, Boolean(m[1]));
    for (const m of text.matchAll(/\bimport\(\s*'([^']+)'\s*\)/g)) add(m[1]!, false);
    graph.set(file, edges);
  }
  return graph;
}

const graph = importGraph([...sources('src'), ...sources('plugins')]);
const frontOf = (path: string) => /^src\/fronts\/([^/]+)\//.exec(path)?.[1];

/**
 * Front-to-front imports that are part of the design, each with its reason. Anything else two
 * fronts share belongs in src/fronts/web (browser pieces) or in core.
 */
const ALLOWED_BETWEEN_FRONTS: Record<string, string> = {
  'admin -> src/fronts/bridge/credentials.ts': 'the admin API administers each front’s clients (Registries)',
  'admin -> src/fronts/oidc/clients.ts': 'the admin API administers each front’s clients (Registries)',
  'admin -> src/fronts/radius/clients.ts': 'the admin API administers each front’s clients (Registries)',
  'admin -> src/fronts/radius/accounting.ts': 'the admin API lists RADIUS accounting sessions',
  'console -> src/fronts/admin/audit.ts': 'the console is the admin API’s pages: its changes are admin events',
  'demo-rp -> src/fronts/oidc/provider.ts': 'the development relying party reads the acr values it shows',
};

const violations = (rule: (from: string, edge: Edge) => string | null) => {
  const found: string[] = [];
  for (const [from, edges] of graph) for (const e of edges) {
    const why = rule(from, e);
    if (why) found.push(`${from} -> ${e.to}: ${why}`);
  }
  return found;
};

describe('architecture: which way imports point', () => {
  it('finds the modules and their imports', () => {
    assert.ok(graph.size > 50, `only ${graph.size} modules found`);
    assert.ok(graph.get('src/main.ts')!.some((e) => e.to === 'src/core/engine.ts'));
  });

  it('core imports nothing outside core', () => {
    assert.deepEqual(
      violations((from, e) => (from.startsWith('src/core/') && !e.to.startsWith('src/core/') ? 'core may only import core' : null)),
      [],
    );
  });

  it('store implementations import only core and the store folder', () => {
    assert.deepEqual(
      violations((from, e) => (from.startsWith('src/store/') && !/^src\/(core|store)\//.test(e.to) ? 'a store may only import core' : null)),
      [],
    );
  });

  it('plugins import only core, configuration types and their own folder', () => {
    assert.deepEqual(
      violations((from, e) => {
        if (!from.startsWith('plugins/')) return null;
        const own = from.split('/').slice(0, 2).join('/') + '/';
        if (e.to.startsWith(own) || e.to.startsWith('src/core/')) return null;
        if (e.to === 'src/config/schema.ts' && e.typeOnly) return null;
        return 'a plugin may only import core';
      }),
      [],
    );
  });

  it('the HTTP shell and the shared browser layer import no front', () => {
    assert.deepEqual(
      violations((from, e) => {
        const shared = from.startsWith('src/http/') || from.startsWith('src/fronts/web/');
        if (!shared) return null;
        const to = frontOf(e.to);
        return to && to !== 'web' ? 'shared layers sit below the fronts' : null;
      }),
      [],
    );
  });

  it('a front imports another front only through the allow-list', () => {
    const used = new Set<string>();
    const found = violations((from, e) => {
      const a = frontOf(from);
      const b = frontOf(e.to);
      if (!a || !b || a === b || b === 'web') return null;
      const key = `${a} -> ${e.to}`;
      if (ALLOWED_BETWEEN_FRONTS[key]) {
        used.add(key);
        return null;
      }
      return 'fronts do not import each other: share through src/fronts/web or core, or allow it here with a reason';
    });
    assert.deepEqual(found, []);
    // An allowance nothing uses any more is taken out, so the list stays the truth.
    assert.deepEqual(Object.keys(ALLOWED_BETWEEN_FRONTS).filter((k) => !used.has(k)), []);
  });

  it('nothing imports in a cycle', () => {
    // Tarjan's strongly connected components over value imports (type-only imports vanish at run time).
    const index = new Map<string, number>();
    const low = new Map<string, number>();
    const stack: string[] = [];
    const onStack = new Set<string>();
    const cycles: string[][] = [];
    let next = 0;
    const visit = (v: string) => {
      index.set(v, next);
      low.set(v, next++);
      stack.push(v);
      onStack.add(v);
      for (const e of graph.get(v) ?? []) {
        if (e.typeOnly || !graph.has(e.to)) continue;
        if (!index.has(e.to)) {
          visit(e.to);
          low.set(v, Math.min(low.get(v)!, low.get(e.to)!));
        } else if (onStack.has(e.to)) low.set(v, Math.min(low.get(v)!, index.get(e.to)!));
      }
      if (low.get(v) === index.get(v)) {
        const component: string[] = [];
        let w: string;
        do {
          w = stack.pop()!;
          onStack.delete(w);
          component.push(w);
        } while (w !== v);
        if (component.length > 1) cycles.push(component.sort());
      }
    };
    for (const v of graph.keys()) if (!index.has(v)) visit(v);
    assert.deepEqual(cycles, []);
  });
});
