package k8s

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"

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

// parsePods decodes a PodList as the kubelet's /pods serves it (JSON of
// k8s.io/api/core/v1 types) and indexes its containers. Statuses without a
// container ID (not started yet) or with one that is not runtime://<64 hex>
// are skipped; a body that is not a PodList is an error.
func parsePods(data []byte, fetched time.Time) (*podIndex, error) {
	var list corev1.PodList
	if err := json.Unmarshal(data, &list); err != nil {
		return nil, fmt.Errorf("decode the kubelet's pod list: %w", err)
	}
	if list.Kind != "" && list.Kind != "PodList" {
		return nil, fmt.Errorf("decode the kubelet's pod list: kind %q, want PodList", list.Kind)
	}
	idx := &podIndex{fetched: fetched, containers: make(map[string]containerInfo)}
	for i := range list.Items {
		pod := &list.Items[i]
		if pod.UID == "" {
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
		for _, statuses := range [][]corev1.ContainerStatus{
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
				idx.containers[id] = containerInfo{podUID: string(pod.UID), selectors: validSelectors(sels)}
			}
		}
	}
	return idx, nil
}

// podSelectors are the selectors every container of pod shares.
func podSelectors(pod *corev1.Pod) []model.Selector {
	sels := make([]model.Selector, 0, 6+len(pod.Labels)+len(pod.OwnerReferences))
	add := func(k, v string) { sels = append(sels, model.Selector{Type: Name, Value: k + ":" + v}) }
	add("ns", pod.Namespace)
	add("sa", pod.Spec.ServiceAccountName)
	add("pod-name", pod.Name)
	add("pod-uid", string(pod.UID))
	for k, v := range pod.Labels {
		add("pod-label", k+":"+v)
	}
	for _, o := range pod.OwnerReferences {
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
