export interface BuiltImage {
  base: string;
  root: string;
  workdir: string;
  env: Record<string, string>;
  user: number;
  volumes: string[];
  expose: string[];
  healthcheck?: string[];
  command: string[];
  stages: string[];
}
export function parseDockerfile(text: string): { op: string; args: string }[];
export function buildImage(opts: { dockerfile: string; context: string; out?: string; log?: (line: string) => void }): BuiltImage;
export function asImageUser(image: BuiltImage, command: string[]): string[];
