/**
 * Where the first factor is checked. The local directory (plugins/
 * directory-local) uses Countersign's own users; an LDAP plugin would bind
 * against a directory server instead. A directory answers only yes or no, so
 * a front cannot tell an unknown name from a wrong password, and neither can
 * whoever is guessing.
 */
export interface Directory {
  readonly name: string;
  /** The canonical user name when the password is right; null otherwise. */
  verify(user: string, password: string): Promise<string | null>;
}
