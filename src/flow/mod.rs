//! The Flow Service and IMS client: the operator's only door to Adobe. No Kubernetes types in here.
