"""The speaker: l2guard's layer-2 data plane (ARP and NDP answers, gratuitous announcements).

Public entry point is :class:`speaker.announcer.Announcer`. Nothing in this package reads Kubernetes;
the control plane tells the announcer which IPs to own through ``Announcer.set()``.
"""
