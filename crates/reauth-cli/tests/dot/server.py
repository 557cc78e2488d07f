"""A django-oauth-toolkit authorization server for `reauth lab --against`.

An independent OAuth2 implementation (django-oauth-toolkit on oauthlib, from
PyPI), configured as shipped: refresh tokens rotate and a spent one is
`invalid_grant`; RFC 7009 revocation; OpenID Connect discovery. Plus one
protected resource that answers 401 to a token it refuses.

    python server.py PORT_FILE

Listens on 127.0.0.1 on a free port, writes the port to PORT_FILE, serves until
killed. The user `demo` / `demo-password` and the confidential client
`reauth-lab` / `lab-secret` (password grant) exist.
"""

import os
import socketserver
import sys
import tempfile
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from jwcrypto import jwk

DB = os.path.join(tempfile.mkdtemp(prefix="reauth-dot-"), "db.sqlite3")

import django  # noqa: E402
from django.conf import settings  # noqa: E402

settings.configure(
    DEBUG=False,
    SECRET_KEY="reauth-lab-test-only",
    ALLOWED_HOSTS=["127.0.0.1", "localhost"],
    ROOT_URLCONF=__name__,
    INSTALLED_APPS=[
        "django.contrib.auth",
        "django.contrib.contenttypes",
        "oauth2_provider",
    ],
    MIDDLEWARE=[],
    DATABASES={"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": DB,
                           "OPTIONS": {"timeout": 30}}},
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
    OAUTH2_PROVIDER={
        "ACCESS_TOKEN_EXPIRE_SECONDS": 300,
        "ROTATE_REFRESH_TOKEN": True,
        "OIDC_ENABLED": True,
        "OIDC_RSA_PRIVATE_KEY": jwk.JWK.generate(kty="RSA", size=2048)
        .export_to_pem(private_key=True, password=None)
        .decode(),
        "SCOPES": {"openid": "OpenID Connect", "read": "read"},
        "DEFAULT_SCOPES": ["read"],
    },
)
django.setup()

from django.core.management import call_command  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import include, path  # noqa: E402
from oauth2_provider.oauth2_backends import get_oauthlib_core  # noqa: E402


def resource(request):
    valid, _ = get_oauthlib_core().verify_request(request, scopes=[])
    if valid:
        return HttpResponse("ok")
    response = HttpResponse(status=401)
    response["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    return response


urlpatterns = [
    path("o/", include("oauth2_provider.urls", namespace="oauth2_provider")),
    path("api/resources", resource),
]


class ThreadingServer(socketserver.ThreadingMixIn, WSGIServer):
    daemon_threads = True
    request_queue_size = 256


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args):
        pass


def main():
    call_command("migrate", verbosity=0, interactive=False)
    from django.contrib.auth.models import User
    from oauth2_provider.models import Application

    user = User.objects.create_user("demo", password="demo-password")
    Application.objects.create(
        name="reauth lab",
        user=user,
        client_id="reauth-lab",
        client_secret="lab-secret",
        client_type=Application.CLIENT_CONFIDENTIAL,
        authorization_grant_type=Application.GRANT_PASSWORD,
    )
    from django.core.wsgi import get_wsgi_application

    server = make_server("127.0.0.1", 0, get_wsgi_application(),
                         server_class=ThreadingServer, handler_class=QuietHandler)
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(server.server_port))
    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    server.serve_forever()


if __name__ == "__main__":
    main()
