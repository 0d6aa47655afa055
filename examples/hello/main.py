"""A tiny Ray app: a task that imports a local py_module and a PyPI package."""
import ray
import requests

import helpers


@ray.remote
def greet(name: str) -> str:
    # `common` ships as a py_module; `helpers` comes with the working dir.
    from common.greeting import greeting

    return greeting(helpers.shout(name))


if __name__ == "__main__":
    ray.init()
    print(ray.get(greet.remote("raypack")))
    print(f"requests {requests.__version__} imported")
