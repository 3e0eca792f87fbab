/**
 * Which audit stream each event the code writes goes to (docs/security.md, "The audit trail"):
 * what anyone can repeat without limit is activity, every security decision and factor change
 * is security, and anything unknown is security.
 */
import assert from 'node:assert/strict';
import { it } from 'node:test';
import { auditStreamOf, type AuditEvent } from '../../src/core/store.js';

const event = (type: string, action?: string): AuditEvent => ({ at: 0, type, ...(action ? { detail: { action } } : {}) });

it('sends every event the code writes to the stream docs/security.md names', () => {
  const security: [string, string?][] = [
    ['login'],
    ['otp'],
    ['fraud'],
    ['admin', 'user.create'],
    ['admin', 'otp.enable'],
    ['admin', 'factors.bulk'],
    ['admin', 'device.rename'], // an administrator renaming a device is an admin change
    ['admin', 'console.sign-in'],
    ['admin', 'offline.batch'],
    ['account', 'account.sign-in'],
    ['account', 'account.otp-enrol'],
    ['account', 'account.device-remove'],
    ['account', 'account.recovery-codes'],
    ['account', 'account.passkey-add'],
    ['account', 'account.passkey-remove'],
    ['device', 'device.enrol'],
    ['device', 'device.forget'],
    ['something-new'],
    ['account', 'account.something-new'],
  ];
  const activity: [string, string?][] = [
    ['radius'],
    ['accounting'],
    ['account', 'account.device-enrolment'],
    ['device', 'device.rename'],
    ['device', 'device.lock'],
  ];
  for (const [type, action] of security) assert.equal(auditStreamOf(event(type, action)), 'security', `${type} ${action ?? ''}`);
  for (const [type, action] of activity) assert.equal(auditStreamOf(event(type, action)), 'activity', `${type} ${action ?? ''}`);
});
