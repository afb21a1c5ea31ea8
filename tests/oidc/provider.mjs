// A real OpenID provider (panva's oidc-provider) on loopback, for the gateway's sign-in tests
// (tests/it/oidc.rs). Plain http on 127.0.0.1: the gateway accepts an http issuer on loopback
// only. Listens on a free port and prints one line, `issuer <URL>`, once it is ready.
//
// Environment: OIDC_REDIRECT_URL (the gateway's /console/oidc/callback), OIDC_CLIENT_ID,
// OIDC_CLIENT_SECRET. Test accounts only; any password signs in (oidc-provider's development
// interactions), and the consent is given for the person.
import http from 'node:http';
import Provider from 'oidc-provider';

const redirect = process.env.OIDC_REDIRECT_URL;
const clientId = process.env.OIDC_CLIENT_ID ?? 'passerelle-console';
const clientSecret = process.env.OIDC_CLIENT_SECRET;
if (!redirect || !clientSecret) {
  console.error('provider.mjs needs OIDC_REDIRECT_URL and OIDC_CLIENT_SECRET');
  process.exit(2);
}

// The people of the tests and their groups (`staff` is mapped to no role).
const accounts = {
  vera: { name: 'Vera Viewer', groups: ['passerelle-viewers', 'staff'] },
  olivier: { name: 'Olivier Operator', groups: ['passerelle-operators'] },
  aude: { name: 'Aude Auditor', groups: ['passerelle-auditors'] },
  nadia: { name: 'Nadia Nobody', groups: ['staff'] },
};

const server = http.createServer();
await new Promise((resolve) => server.listen(0, '127.0.0.1', resolve));
const issuer = `http://127.0.0.1:${server.address().port}`;

const provider = new Provider(issuer, {
  clients: [{
    client_id: clientId,
    client_secret: clientSecret,
    redirect_uris: [redirect],
    grant_types: ['authorization_code'],
    response_types: ['code'],
    token_endpoint_auth_method: 'client_secret_basic',
  }],
  pkce: { required: () => true },
  claims: { openid: ['sub'], profile: ['name', 'preferred_username', 'groups'] },
  // The groups go in the ID token, as Keycloak and Entra ID put them there.
  conformIdTokenClaims: false,
  cookies: { keys: ['tests-only-not-a-secret'] },
  features: { devInteractions: { enabled: true } },
  async findAccount(ctx, id) {
    const account = accounts[id];
    if (!account) return undefined;
    return {
      accountId: id,
      async claims() {
        return { sub: id, preferred_username: id, name: account.name, groups: account.groups };
      },
    };
  },
  // Consent is given at once: the tests sign people in, they do not test a consent screen.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId
      || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const grant = new ctx.oidc.provider.Grant({
      clientId: ctx.oidc.client.clientId,
      accountId: ctx.oidc.session.accountId,
    });
    grant.addOIDCScope('openid profile');
    await grant.save();
    return grant;
  },
});

server.on('request', provider.callback());
process.on('SIGTERM', () => process.exit(0));
console.log(`issuer ${issuer}`);
