package k8s

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/signet-id/signet/internal/model"
)

// MaxPodListSize bounds the kubelet's answer: a node at the default limit
// of 110 pods answers a few megabytes.
const MaxPodListSize = 32 << 20

// podIndex is one answer of the kubelet, indexed by container ID.
type podIndex struct {
	fetched    time.Time // when the request was sent
	containers map[string]containerInfo
}

// containerInfo is one running container and its selectors, computed once
// per kubelet answer.
type containerInfo struct {
	podUID    string
	selectors []model.Selector
}

// podList is the part of a core/v1 PodList, as the kubelet's /pods serves
// it, that the attestor reads: the JSON names of k8s.io/api/core/v1's
// types, decoded with encoding/json so that the agent links none of the
// Kubernetes API machinery (internal/deptest keeps k8s.io/* out of the slim
// agent). Fields not listed here are ignored.
type podList struct {
	Kind  string    `json:"kind"`
	Items []kubePod `json:"items"`
}

type kubePod struct {
	Metadata struct {
		Name            string            `json:"name"`
		Namespace       string            `json:"namespace"`
		UID             string            `json:"uid"`
		Labels          map[string]string `json:"labels"`
		OwnerReferences []struct {
			Kind string `json:"kind"`
			Name string `json:"name"`
		} `json:"ownerReferences"`
	} `json:"metadata"`
	Spec struct {
		InitContainers      []containerSpec `json:"initContainers"`
		Containers          []containerSpec `json:"containers"`
		EphemeralContainers []containerSpec `json:"ephemeralContainers"`
		ServiceAccountName  string          `json:"serviceAccountName"`
		NodeName            string          `json:"nodeName"`
	} `json:"spec"`
	Status struct {
		InitContainerStatuses      []containerStatus `json:"initContainerStatuses"`
		ContainerStatuses          []containerStatus `json:"containerStatuses"`
		EphemeralContainerStatuses []containerStatus `json:"ephemeralContainerStatuses"`
	} `json:"status"`
}

type containerSpec struct {
	Name  string `json:"name"`
	Image string `json:"image"`
}

type containerStatus struct {
	Name        string `json:"name"`
	Image       string `json:"image"`
	ImageID     string `json:"imageID"`
	ContainerID string `json:"containerID"`
}

// parsePods decodes a PodList as the kubelet's /pods serves it (JSON of
// k8s.io/api/core/v1 types, see podList) and indexes its containers. Statuses without a
// container ID (not started yet) or with one that is not runtime://<64 hex>
// are skipped; a body that is not a PodList is an error.
func parsePods(data []byte, fetched time.Time) (*podIndex, error) {
	var list podList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("decode the kubelet's pod list: %w", err)
	}
	if list.Kind != "" && list.Kind != "PodList" {
		return nil, fmt.Errorf("decode the kubelet's pod list: kind %q, want PodList", list.Kind)
	}
	idx := &podIndex{fetched: fetched, containers: make(map[string]containerInfo)}
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.Metadata.UID == "" {
			continue
		}
		podSels := podSelectors(pod)
		specImages := make(map[string]string)
		for _, c := range pod.Spec.InitContainers {
			specImages[c.Name] = c.Image
		}
		for _, c := range pod.Spec.Containers {
			specImages[c.Name] = c.Image
		}
		for _, c := range pod.Spec.EphemeralContainers {
			specImages[c.Name] = c.Image
		}
		for _, statuses := range [][]containerStatus{
			pod.Status.InitContainerStatuses, pod.Status.ContainerStatuses, pod.Status.EphemeralContainerStatuses,
		} {
			for j := range statuses {
				st := &statuses[j]
				id, ok := containerID(st.ContainerID)
				if !ok {
					continue
				}
				sels := append([]model.Selector(nil), podSels...)
				add := func(k, v string) { sels = append(sels, model.Selector{Type: Name, Value: k + ":" + v}) }
				add("container-name", st.Name)
				add("container-image", st.Image)
				if img := specImages[st.Name]; img != "" && img != st.Image {
					add("container-image", img)
				}
				if st.ImageID != "" && st.ImageID != st.Image {
					add("container-image", st.ImageID)
				}
				idx.containers[id] = containerInfo{podUID: pod.Metadata.UID, selectors: validSelectors(sels)}
			}
		}
	}
	return idx, nil
}

// podSelectors are the selectors every container of pod shares.
func podSelectors(pod *kubePod) []model.Selector {
	sels := make([]model.Selector, 0, 6+len(pod.Metadata.Labels)+len(pod.Metadata.OwnerReferences))
	add := func(k, v string) { sels = append(sels, model.Selector{Type: Name, Value: k + ":" + v}) }
	add("ns", pod.Metadata.Namespace)
	add("sa", pod.Spec.ServiceAccountName)
	add("pod-name", pod.Metadata.Name)
	add("pod-uid", pod.Metadata.UID)
	for k, v := range pod.Metadata.Labels {
		add("pod-label", k+":"+v)
	}
	for _, o := range pod.Metadata.OwnerReferences {
		add("pod-owner", o.Kind+":"+o.Name)
	}
	add("node-name", pod.Spec.NodeName)
	return sels
}

// containerID returns the ID of a status's "containerd://<id>",
// "cri-o://<id>" or "docker://<id>".
func containerID(s string) (string, bool) {
	_, id, ok := strings.Cut(s, "://")
	if !ok || len(id) != 64 || strings.Trim(id, "0123456789abcdef") != "" {
		return "", false
	}
	return id, true
}

// validSelectors sorts sels and drops those the store would refuse (an
// empty service account name, an over-long label), which could never match
// an entry.
func validSelectors(sels []model.Selector) []model.Selector {
	out := sels[:0]
	for _, s := range sels {
		if s.Validate() == nil {
			out = append(out, s)
		}
	}
	return model.SortSelectors(out)
}
