"""Object names and labels ending in a newline are refused with 422, as a real API server does.

Issue 10, finding 7: the local API server checked them with re.match, where `$` also matches
before a final newline.
"""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException


@pytest.mark.parametrize(("name", "labels"), [("web\n", None), ("web", {"team": "ml\n"}), ("web", {"team\n": "ml"})])
def test_a_trailing_newline_in_a_name_or_label_is_422(apps, make_deployment, name, labels):
    with pytest.raises(ApiException) as refused:
        apps.create_namespaced_deployment("default", make_deployment(name, labels=labels))
    assert refused.value.status == 422
