#!/usr/bin/env python3
"""registry_front.py: what the oci source's TAP tests serve beside a real
docker-registry (test/t/RegistryTest.pm starts it).

  registry_front.py --port P --log FILE --control FILE [--upstream URL]
      [--token-key KEY --token-cert CERT --issuer I --service S --users u:p,...]
      [--ecr-keys AKID:SECRET --ecr-region R --ecr-password PW --ecr-expires S]

Paths:
  /v2/...   proxied to --upstream, as the CONTROL file says (key=value
            lines, re-read for every request): fail=N answers 500 to the
            next N requests (fail=always: all of them), delay_ms=N waits
            before answering, down=1 closes connections without an answer,
            no_digest=1 leaves out Docker-Content-Digest.
            A tag list is paginated here with n and last, and a Link header
            (Distribution 2.8 answers every tag at once); link_base=URL in
            CONTROL puts URL before the Link's path.
  /token    the registry token flow's realm: checks basic credentials
            against --users (none given: anonymous), answers
            {"token", "expires_in"} with a JWT (RS256, signed by openssl
            with --token-key, its certificate in x5c) granting the scopes
            asked for.  token_ttl=S in CONTROL makes the JWT expire S
            seconds after it is issued while expires_in still says 300.
  /ecr      a stand-in for ECR's GetAuthorizationToken: verifies the AWS
            Signature V4 of the POST with --ecr-keys (every x-amz-* header
            signed, service ecr, region --ecr-region) and answers
            base64("AWS:" + --ecr-password), expiring --ecr-expires seconds
            later; 403 InvalidSignatureException otherwise.

Every request is logged to LOG as one line: <path> <status> [note].
"""
import argparse
import base64
import datetime
import hashlib
import hmac
import http.client
import http.server
import json
import os
import subprocess
import threading
import time
import urllib.parse

ARGS = None
LOCK = threading.Lock()
FAILS_DONE = [0]


def control():
    c = {}
    try:
        with open(ARGS.control) as f:
            for line in f:
                if '=' in line:
                    k, v = line.strip().split('=', 1)
                    c[k] = v
    except FileNotFoundError:
        pass
    return c


def log(line):
    with LOCK, open(ARGS.log, 'a') as f:
        f.write(line + '\n')


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b'=').decode()


def make_jwt(subject, access, ttl):
    with open(ARGS.token_cert) as f:
        pem = f.read()
    der_b64 = ''.join(line for line in pem.splitlines() if '-----' not in line)
    header = {'typ': 'JWT', 'alg': 'RS256', 'x5c': [der_b64]}
    now = int(time.time())
    # Distribution allows a minute of clock skew past exp: take it back so
    # that the token ends ttl seconds from now
    exp = now + ttl - 60 if ttl < 300 else now + ttl
    claims = {'iss': ARGS.issuer, 'sub': subject, 'aud': ARGS.service, 'exp': exp,
              'nbf': now - 10, 'iat': now, 'jti': os.urandom(8).hex(), 'access': access}
    signing_input = (b64url(json.dumps(header).encode()) + '.'
                     + b64url(json.dumps(claims).encode()))
    sig = subprocess.run(['openssl', 'dgst', '-sha256', '-sign', ARGS.token_key],
                         input=signing_input.encode(), capture_output=True, check=True).stdout
    return signing_input + '.' + b64url(sig)


def parse_scope(scope):
    # repository:team/app:pull,push   registry:catalog:*
    kind, rest = scope.split(':', 1)
    name, actions = rest.rsplit(':', 1)
    return {'type': kind, 'name': name, 'actions': actions.split(',')}


def sigv4_check(handler, body):
    """None when the request is signed with the key, else why not."""
    auth = handler.headers.get('Authorization', '')
    if not auth.startswith('AWS4-HMAC-SHA256 '):
        return 'no AWS4-HMAC-SHA256 authorization'
    parts = dict(p.strip().split('=', 1) for p in auth[len('AWS4-HMAC-SHA256 '):].split(','))
    akid, date, region, service, term = parts['Credential'].split('/')
    signed = parts['SignedHeaders'].split(';')
    key_id, secret = ARGS.ecr_keys.split(':', 1)
    if akid != key_id:
        return 'unknown access key id ' + akid
    if region != ARGS.ecr_region or service != 'ecr' or term != 'aws4_request':
        return 'wrong scope ' + parts['Credential']
    for h in handler.headers.keys():
        if (h.lower().startswith('x-amz-') or h.lower() == 'host') and h.lower() not in signed:
            return 'header %s is not signed' % h
    amz_date = handler.headers.get('x-amz-date', '')
    if not amz_date.startswith(date):
        return 'x-amz-date does not match the credential date'
    url = urllib.parse.urlsplit(handler.path)
    canonical_headers = ''.join('%s:%s\n' % (h, ' '.join(handler.headers.get(h, '').split()))
                                for h in signed)
    canonical = '\n'.join(['POST', url.path or '/', url.query, canonical_headers,
                           ';'.join(signed), hashlib.sha256(body).hexdigest()])
    to_sign = '\n'.join(['AWS4-HMAC-SHA256', amz_date,
                         '/'.join([date, region, service, term]),
                         hashlib.sha256(canonical.encode()).hexdigest()])
    k = ('AWS4' + secret).encode()
    for part in (date, region, service, term):
        k = hmac.new(k, part.encode(), hashlib.sha256).digest()
    want = hmac.new(k, to_sign.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, parts['Signature']):
        return 'signature mismatch'
    if handler.headers.get('X-Amz-Target') != \
            'AmazonEC2ContainerRegistry_V20150921.GetAuthorizationToken':
        return 'wrong X-Amz-Target'
    return None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = 'HTTP/1.1'

    def log_message(self, *a):
        pass

    def answer(self, status, body=b'', headers=None, note=''):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if not any(k.lower() == 'content-length' for k in (headers or {})):
            self.send_header('Content-Length', str(len(body)))
        self.end_headers()
        if self.command != 'HEAD':
            self.wfile.write(body)
        log('%s %s %d %s' % (self.command, self.path, status, note))

    def do_GET(self):
        self.route(b'')

    def do_HEAD(self):
        self.route(b'')

    def do_POST(self):
        n = int(self.headers.get('Content-Length', 0))
        self.route(self.rfile.read(n) if n else b'')

    def route(self, body):
        if self.path.startswith('/token'):
            return self.token()
        if self.path.startswith('/ecr'):
            return self.ecr(body)
        c = control()
        if c.get('down') == '1':
            self.close_connection = True
            log('%s %s down' % (self.command, self.path))
            return
        if c.get('delay_ms'):
            time.sleep(int(c['delay_ms']) / 1000.0)
        fail = c.get('fail', '0')
        with LOCK:
            failing = fail == 'always' or FAILS_DONE[0] < int(fail)
            if failing:
                FAILS_DONE[0] += 1
            elif fail == '0':
                FAILS_DONE[0] = 0
        if failing:
            return self.answer(500, b'{"errors":[{"code":"UNKNOWN","message":"injected failure"}]}',
                               {'Content-Type': 'application/json'}, 'injected')
        return self.proxy()

    def proxy(self):
        up = urllib.parse.urlsplit(ARGS.upstream)
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        paginate = url.path.endswith('/tags/list')
        path = url.path if paginate else self.path
        conn = http.client.HTTPConnection(up.hostname, up.port, timeout=30)
        headers = {k: v for k, v in self.headers.items()
                   if k.lower() in ('authorization', 'accept')}
        conn.request(self.command, path, headers=headers)
        r = conn.getresponse()
        data = r.read()
        kept = ('content-type', 'docker-content-digest', 'www-authenticate', 'link')
        if control().get('no_digest') == '1':
            kept = kept[:1] + kept[2:]
        out = {k: v for k, v in r.getheaders() if k.lower() in kept}
        if self.command == 'HEAD':
            out['Content-Length'] = r.getheader('Content-Length', '0')
        if paginate and r.status == 200:
            doc = json.loads(data)
            tags = sorted(doc.get('tags') or [])
            last = query.get('last', [''])[0]
            n = int(query.get('n', ['1000'])[0])
            rest = [t for t in tags if t > last] if last else tags
            page = rest[:n]
            if len(rest) > n:
                out['Link'] = '<%s%s?n=%d&last=%s>; rel="next"' % (
                    control().get('link_base', ''), url.path, n, urllib.parse.quote(page[-1]))
            data = json.dumps({'name': doc['name'], 'tags': page}).encode()
        conn.close()
        self.answer(r.status, data, out, 'proxied')

    def token(self):
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(self.path).query)
        subject = 'anonymous'
        if ARGS.users:
            auth = self.headers.get('Authorization', '')
            pair = base64.b64decode(auth[6:]).decode() if auth.startswith('Basic ') else ''
            if pair not in ARGS.users.split(','):
                return self.answer(401, b'{"details":"wrong credentials"}',
                                   {'Content-Type': 'application/json'}, 'refused')
            subject = pair.split(':', 1)[0]
        access = [parse_scope(s) for scopes in q.get('scope', []) for s in scopes.split(' ')]
        ttl = int(control().get('token_ttl', '300'))
        if q.get('service', [''])[0] != ARGS.service:
            return self.answer(400, b'{"details":"unknown service"}', {}, 'bad service')
        body = json.dumps({'token': make_jwt(subject, access, ttl), 'expires_in': 300}).encode()
        self.answer(200, body, {'Content-Type': 'application/json'},
                    'scope=' + ' '.join(q.get('scope', [])))

    def ecr(self, body):
        why = sigv4_check(self, body)
        if why:
            return self.answer(403, json.dumps({'__type': 'InvalidSignatureException',
                                                'message': why}).encode(),
                               {'Content-Type': 'application/x-amz-json-1.1'}, 'refused: ' + why)
        token = base64.b64encode(('AWS:' + ARGS.ecr_password).encode()).decode()
        expires = time.time() + ARGS.ecr_expires
        self.answer(200, json.dumps({'authorizationData': [{
            'authorizationToken': token, 'expiresAt': expires,
            'proxyEndpoint': ARGS.upstream}]}).encode(),
            {'Content-Type': 'application/x-amz-json-1.1'}, 'signed by ' + ARGS.ecr_keys.split(':')[0])


def main():
    global ARGS
    p = argparse.ArgumentParser()
    p.add_argument('--port', type=int, required=True)
    p.add_argument('--log', required=True)
    p.add_argument('--control', required=True)
    p.add_argument('--upstream', default='')
    p.add_argument('--token-key')
    p.add_argument('--token-cert')
    p.add_argument('--issuer', default='cdviz-test-issuer')
    p.add_argument('--service', default='cdviz-test-registry')
    p.add_argument('--users', default='')
    p.add_argument('--ecr-keys', default='')
    p.add_argument('--ecr-region', default='eu-west-1')
    p.add_argument('--ecr-password', default='')
    p.add_argument('--ecr-expires', type=int, default=43200)
    ARGS = p.parse_args()
    server = http.server.ThreadingHTTPServer(('127.0.0.1', ARGS.port), Handler)
    server.daemon_threads = True
    log('listening %d' % ARGS.port)
    server.serve_forever()


if __name__ == '__main__':
    main()
