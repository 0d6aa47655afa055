"""A minimal Ray Serve application: `serve_app:app` in recipes/rayservice.toml."""

from ray import serve


@serve.deployment
class Hello:
    async def __call__(self, request):
        return "hello from raypack"


app = Hello.bind()
