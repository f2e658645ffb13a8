// The console's 3D view: three.js with orbit controls, fit-to-view and a wireframe
// toggle. GLBs may use Draco or meshopt compression and KTX2 textures: the decoders are
// the vendored copies under vendor/ (no CDN), found relative to this module.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";
import { RoomEnvironment } from "three/addons/environments/RoomEnvironment.js";
import { DRACOLoader } from "three/addons/loaders/DRACOLoader.js";
import { GLTFLoader } from "three/addons/loaders/GLTFLoader.js";
import { KTX2Loader } from "three/addons/loaders/KTX2Loader.js";
import { MeshoptDecoder } from "three/addons/libs/meshopt_decoder.module.js";

const LIBS = new URL("./vendor/three/examples/jsm/libs/", import.meta.url);

export class Viewer {
  constructor(container) {
    this.container = container;
    this.renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
    this.renderer.setPixelRatio(window.devicePixelRatio);
    this.renderer.toneMapping = THREE.NeutralToneMapping;
    container.replaceChildren(this.renderer.domElement);

    this.scene = new THREE.Scene();
    this.scene.background = new THREE.Color(0xdde1e8);
    const pmrem = new THREE.PMREMGenerator(this.renderer);
    this.scene.environment = pmrem.fromScene(new RoomEnvironment(), 0.04).texture;
    // Image-based light for PBR materials, plus a key light so that plain white
    // (untextured) models still show their shape against the light background.
    this.scene.environmentIntensity = 0.35;
    this.camera = new THREE.PerspectiveCamera(40, 1, 0.01, 1000);
    this.scene.add(this.camera);
    const key = new THREE.DirectionalLight(0xffffff, 1.6);
    key.position.set(0.5, 1, 0.8);
    key.target.position.set(0, 0, -1);
    this.camera.add(key, key.target); // lit from over the viewer's shoulder, wherever they orbit
    this.scene.add(new THREE.HemisphereLight(0xffffff, 0x8a8f99, 0.3));
    this.controls = new OrbitControls(this.camera, this.renderer.domElement);
    this.controls.addEventListener("change", () => this.render());

    // Only the wasm decoder is vendored (every browser the console targets has wasm).
    const draco = new DRACOLoader().setDecoderPath({
      js: new URL("draco/draco_wasm_wrapper.js", LIBS).href,
      wasm: new URL("draco/draco_decoder.wasm", LIBS).href,
    });
    const ktx2 = new KTX2Loader().setTranscoderPath(new URL("basis/", LIBS).href);
    ktx2.detectSupport(this.renderer);
    this.loader = new GLTFLoader().setDRACOLoader(draco).setKTX2Loader(ktx2).setMeshoptDecoder(MeshoptDecoder);
    this.decoders = [draco, ktx2];

    this.resizer = new ResizeObserver(() => this.resize());
    this.resizer.observe(container);
    this.model = null;
    this.wireframe = false;
    this.resize();
  }

  /** Show a GLB (its bytes); resolves with mesh and triangle counts. */
  async load(buffer) {
    this.container.dataset.state = "loading";
    let gltf;
    try {
      gltf = await this.loader.parseAsync(buffer, "");
    } catch (error) {
      this.container.dataset.state = "error";
      throw error;
    }
    if (this.model) {
      this.scene.remove(this.model);
      disposeTree(this.model);
    }
    this.model = gltf.scene;
    this.scene.add(this.model);
    this.setWireframe(this.wireframe);
    this.fit();
    let meshes = 0;
    let triangles = 0;
    this.model.traverse((node) => {
      if (!node.isMesh) return;
      meshes += 1;
      const g = node.geometry;
      triangles += (g.index ? g.index.count : g.attributes.position.count) / 3;
    });
    this.container.dataset.state = "loaded";
    this.container.dataset.triangles = String(triangles);
    return { meshes, triangles };
  }

  /** Frame the whole model, seen from the front, a little from above and the right. */
  fit() {
    if (!this.model) return;
    const box = new THREE.Box3().setFromObject(this.model);
    if (box.isEmpty()) return;
    const sphere = box.getBoundingSphere(new THREE.Sphere());
    const radius = Math.max(sphere.radius, 1e-6);
    const fov = THREE.MathUtils.degToRad(this.camera.fov);
    const distance = (radius / Math.sin(Math.min(fov, fov * this.camera.aspect) / 2)) * 1.0;
    const direction = new THREE.Vector3(1, 0.7, 1.3).normalize();
    this.camera.position.copy(sphere.center).addScaledVector(direction, distance);
    this.camera.near = distance / 100;
    this.camera.far = distance * 100;
    this.camera.updateProjectionMatrix();
    this.controls.target.copy(sphere.center);
    this.controls.update();
    this.render();
  }

  /** Draw every mesh's edges instead of its surfaces (the materials' own `wireframe`). */
  setWireframe(on) {
    this.wireframe = on;
    this.container.dataset.wireframe = String(on);
    this.model?.traverse((node) => {
      if (!node.isMesh) return;
      for (const material of [node.material].flat()) material.wireframe = on;
    });
    this.render();
  }

  resize() {
    const { clientWidth: w, clientHeight: h } = this.container;
    if (!w || !h) return;
    this.renderer.setSize(w, h, false);
    this.camera.aspect = w / h;
    this.camera.updateProjectionMatrix();
    this.render();
  }

  render() {
    this.renderer.render(this.scene, this.camera);
  }

  dispose() {
    this.resizer.disconnect();
    this.controls.dispose();
    if (this.model) disposeTree(this.model);
    for (const decoder of this.decoders) decoder.dispose();
    this.renderer.dispose();
    this.container.replaceChildren();
    this.container.dataset.state = "empty";
  }
}

function disposeTree(root) {
  root.traverse((node) => {
    node.geometry?.dispose();
    for (const material of [node.material].flat()) {
      if (!material) continue;
      for (const value of Object.values(material)) if (value?.isTexture) value.dispose();
      material.dispose();
    }
  });
}
