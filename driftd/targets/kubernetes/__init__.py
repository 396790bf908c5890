"""The Kubernetes target: the only package that imports kubernetes_asyncio."""

from .rbac import rbac_rules

__all__ = ["KubernetesTarget", "rbac_rules"]


def __getattr__(name: str) -> object:
    # Lazy: importing the target pulls in kubernetes_asyncio (about 0.5 s); rbac_rules must not.
    if name == "KubernetesTarget":
        from .target import KubernetesTarget

        return KubernetesTarget
    raise AttributeError(name)
